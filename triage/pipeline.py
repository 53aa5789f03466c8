"""ingest -> analyze -> draft, in batches; every stage reads what the previous one stored."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import numpy as np
import sqlalchemy as sa
from sqlmodel import Session

from connectors.base import Connector
from connectors.registry import build_connector, connector_types, polled
from connectors.reply import ReplyRules
from triage.analyze import AnalysisInput, Analyzer
from triage.clock import utcnow
from triage.config import BrandSettings, ConnectorSettings, LlmSettings, Settings
from triage.drafts import DraftRequest, render_draft
from triage.drafts.learn import (
    Customer,
    Example,
    draft_category,
    edit_class,
    nearest,
    personalise,
    without_sign_off,
)
from triage.drafts.llm import LlmDrafter
from triage.drafts.render import DraftText, customer_greeting, fits, promised_seconds
from triage.http import AuthError, ConnectorError
from triage.store import Analysis, Case, Draft, Mention, OutboundReply, session_scope
from triage.store.queries import (
    cases_without_draft,
    count_analysed,
    count_recent_by_author,
    get_state,
    prune_raw,
    record_run,
    save_batch,
    sent_examples,
    unanalyzed_mentions,
)

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    connector: str
    new: int = 0
    error: str | None = None
    skipped: bool = False
    consecutive_failures: int = 0
    retry_after: float | None = None  # what the platform asked us to wait
    needs_credentials: bool = False  # retrying cannot help until someone fixes them


@dataclass
class ProcessReport:
    analyzed: int = 0
    cases: int = 0
    drafts: int = 0


@dataclass
class RunReport:
    ingests: list[IngestReport] = field(default_factory=list)
    process: ProcessReport = field(default_factory=ProcessReport)


class Pipeline:
    """Runs the stages against one database; the analyzer is built on first use, once."""

    def __init__(
        self,
        settings: Settings,
        engine: sa.Engine,
        *,
        analyzer_factory: Callable[[Settings], Analyzer] = Analyzer,
        connector_factory: Callable[[ConnectorSettings], Connector] = build_connector,
        drafter_factory: Callable[[LlmSettings, BrandSettings], LlmDrafter] = LlmDrafter,
    ):
        self.settings = settings
        self.engine = engine
        self._analyzer_factory = analyzer_factory
        self._connector_factory = connector_factory
        self._drafter_factory = drafter_factory
        self._analyzer: Analyzer | None = None
        # Sent replies as examples for new drafts (triage/drafts/learn), by reply id.
        self._examples: dict[int, tuple[str, Example] | None] = {}
        self._analyzer_lock = threading.Lock()
        # Connectors run in parallel threads; analysis runs one batch at a time.
        self._process_lock = threading.Lock()

    @property
    def analyzer(self) -> Analyzer:
        with self._analyzer_lock:
            if self._analyzer is None:
                # The first analysis waits for the models: say so, or the run looks stuck.
                log.info("loading the language, sentiment and intent models (a few seconds)")
                started = time.monotonic()
                self._analyzer = self._analyzer_factory(self.settings)
                log.info("models loaded in %.1f s", time.monotonic() - started)
            return self._analyzer

    def ingest(
        self, connector: ConnectorSettings, *, stop: threading.Event | None = None
    ) -> IngestReport:
        """Fetch new mentions from one source; a failure is recorded, logged once, never raised."""
        report = IngestReport(connector=connector.name)
        with session_scope(self.engine) as session:
            state = get_state(session, name=connector.name)
            cursor, paused, failures_before = state.cursor, state.paused, state.consecutive_failures
        if paused:
            report.skipped = True
            return report
        try:
            with self._connector_factory(connector) as source:
                for batch in source.fetch(cursor):
                    with session_scope(self.engine) as session:
                        report.new += save_batch(
                            session,
                            source=connector.name,
                            mentions=batch.mentions,
                            cursor=batch.cursor,
                        )
                    if stop is not None and stop.is_set():
                        break
        except Exception as exc:  # one failing source must never stop the others
            report.error = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, ConnectorError):
                report.retry_after = exc.retry_after
                report.needs_credentials = isinstance(exc, AuthError)
        with session_scope(self.engine) as session:
            state = record_run(session, name=connector.name, error=report.error)
            report.consecutive_failures = state.consecutive_failures
        _log_transition(connector.name, report, failures_before)
        return report

    def prune(self, *, now: datetime | None = None) -> int:
        """Drop the payloads of mentions older than [store] keep_raw_days (batch by batch, each
        its own transaction); returns how many were pruned."""
        days = self.settings.store.keep_raw_days
        if days is None:
            return 0
        before = (now or utcnow()) - timedelta(days=days)
        pruned = 0
        while True:
            with session_scope(self.engine) as session:
                batch = prune_raw(session, before=before)
            pruned += batch
            if not batch:
                break
        if pruned:
            log.info("pruned the payloads of %d mentions older than %d days", pruned, days)
        return pruned

    def process(self, *, stop: threading.Event | None = None) -> ProcessReport:
        """Analyze every new mention, open cases for those that need a human, draft replies."""
        report = ProcessReport()
        llm = self.settings.drafts.llm
        with self._process_lock:
            drafter = self._drafter_factory(llm, self.settings.brand) if llm else None
            try:
                chunk = self.settings.models.batch_size * 4
                # Drafts follow each chunk, so a long backlog yields cards as it goes.
                report.drafts = self._draft_rows(drafter)
                while not (stop is not None and stop.is_set()):
                    analyzed, cases = self._analyze_chunk(chunk, stop)
                    if not analyzed:
                        break
                    report.analyzed += analyzed
                    report.cases += cases
                    report.drafts += self._draft_rows(drafter)
            finally:
                if drafter is not None:
                    drafter.close()
        return report

    def run_once(self, *, stop: threading.Event | None = None) -> RunReport:
        """Poll every enabled connector once, then process what came in."""
        run = RunReport()
        for connector in polled(self.settings.enabled_connectors()):
            run.ingests.append(self.ingest(connector, stop=stop))
        run.process = self.process(stop=stop)
        self.prune()
        return run

    def _analyze_chunk(self, limit: int, stop: threading.Event | None) -> tuple[int, int]:
        with session_scope(self.engine) as session:
            mentions = unanalyzed_mentions(session, limit=limit)
            if not mentions:
                return 0, 0
            analyzer = self.analyzer  # the first chunk waits here while the models load
            if stop is not None and stop.is_set():
                return 0, 0  # a stop asked for during the load: the chunk waits for the next start
            inputs = [self._analysis_input(session, mention) for mention in mentions]
            outputs = analyzer.analyze(inputs)
            cases = 0
            for mention, output in zip(mentions, outputs, strict=True):
                probabilities = output.sentiment.probabilities
                urgency = output.urgency
                session.add(
                    Analysis(
                        mention_id=mention.id,
                        language=output.language.code,
                        language_confidence=output.language.confidence,
                        sentiment=output.sentiment.label,
                        p_negative=probabilities["negative"],
                        p_neutral=probabilities["neutral"],
                        p_positive=probabilities["positive"],
                        complaint_probability=urgency.complaint_probability,
                        kind=urgency.kind,
                        intents=urgency.intents,
                        urgency=urgency.score,
                        priority=urgency.priority,
                        escalate=urgency.escalate,
                        reasons=urgency.reasons,
                        model_version=analyzer.version[:128],
                    )
                )
                mention.analyzed = True  # out of the index of mentions waiting for analysis
                # News and spam need no human; the analysis still counts them in reports.
                if urgency.kind not in ("info", "spam"):
                    session.add(Case(mention_id=mention.id))
                    cases += 1
            session.flush()
            # Counted for reports and spike checks in the transaction that stores them.
            count_analysed(session, mention_ids=[mention.id for mention in mentions])
            return len(mentions), cases

    def _analysis_input(self, session: Session, mention: Mention) -> AnalysisInput:
        prior = 0
        if mention.author_handle and mention.id is not None:
            window = timedelta(seconds=self.settings.models.urgency.repeat_window)
            since = (mention.created_at or utcnow()) - window
            prior = count_recent_by_author(
                session,
                platform=mention.platform,
                handle=mention.author_handle,
                since=since,
                before_id=mention.id,
            )
        return AnalysisInput.of(mention, prior_contacts=prior)

    def _draft_rows(self, drafter: LlmDrafter | None) -> int:
        drafted = 0
        brand = self.settings.brand
        while True:
            with session_scope(self.engine) as session:
                rows = cases_without_draft(session, limit=200)
                sent: dict[tuple[str, str], list[tuple[str, Example]]] = {}
                for _case, mention, analysis in rows:
                    rules = _reply_rules_of(self.settings, mention.source)
                    request = DraftRequest(
                        kind=analysis.kind,
                        language=analysis.language,
                        intents=tuple(analysis.intents or ()),
                        author_name=mention.author_name,
                        author_handle=mention.author_handle,
                        sla_seconds=self._promised(analysis.priority),
                        brand=brand.name,
                        help_url=brand.help_url,
                        status_url=brand.status_url,
                        help_urls=tuple(brand.help_urls.items()),
                        emoji=brand.emoji,
                        links=rules.links if rules else True,
                        register=brand.formality.get(analysis.language),
                        mention_text=mention.text,
                        dm_instructions=brand.dm_instructions.get(analysis.language, ""),
                        contact=brand.contact,
                        playbook=self.settings.playbook,
                        rules=rules,
                    )
                    draft = render_draft(request)
                    draft = self._learned(session, request, analysis.kind, draft, sent)
                    if drafter is not None:
                        draft = drafter.draft(request, mention.text, draft, rules)
                    session.add(
                        Draft(
                            mention_id=mention.id,
                            language=draft.language,
                            text=draft.text,
                            generator=draft.generator,
                            note=draft.note,
                        )
                    )
                drafted += len(rows)
            if len(rows) < 200:
                return drafted

    def _promised(self, priority: str) -> float:
        """The time frame a draft promises: the SLA, counted in the team's opening hours
        (P1 is answered around the clock)."""
        target = self.settings.sla.target(priority)
        hours = None if priority == "P1" else self.settings.playbook.hours
        return promised_seconds(utcnow(), target, hours)

    def _learned(
        self,
        session: Session,
        request: DraftRequest,
        kind: str,
        draft: DraftText,
        sent: dict[tuple[str, str], list[tuple[str, Example]]],
    ) -> DraftText:
        """The draft, or the closest reply an agent edited and sent for a similar mention (same
        language, kind and draft category), made out to this customer. `sent` holds the examples
        per (language, kind) for one drafting batch, so the store is read once per batch."""
        key = (draft.language, kind)
        if key not in sent:
            sent[key] = [
                example
                for reply, old_draft, old in sent_examples(session, language=key[0], kind=kind)
                if (example := self._example(request, reply, old_draft, old)) is not None
            ]
        category = draft_category(draft.generator)
        examples = [example for of, example in sent[key] if of == category]
        if not examples:
            return draft
        found = nearest(self._embed([request.mention_text])[0], examples)
        if found is None:
            return draft
        example, score = found
        me = Customer(customer_greeting(request), request.author_handle, request.mention_text)
        text = personalise(example, me)
        if text is None or not fits(text, request):
            return draft
        note = (
            f"Starts from reply {example.reply_id}, which an agent edited and sent for a similar "
            f"mention ({score:.0%} alike): check it fits this one."
        )
        return DraftText(
            text=text,
            language=draft.language,
            generator=f"learned:{draft.language}:{category}:{example.reply_id}",
            note=f"{draft.note} {note}" if draft.note else note,
        )

    def _example(
        self, request: DraftRequest, reply: OutboundReply, old_draft: Draft, old: Mention
    ) -> tuple[str, Example] | None:
        """A sent reply as an example (its draft's category with it), worked out once per
        process: None when the agent sent the draft unedited (nothing to learn from)."""
        reply_id = reply.id or 0
        if reply_id not in self._examples:
            example = None
            if edit_class(old_draft.text, reply.text) != "unedited":
                brand = self.settings.brand
                customer = replace(
                    request,
                    author_name=old.author_name,
                    author_handle=old.author_handle,
                    mention_text=old.text,
                )
                example = (
                    draft_category(old_draft.generator),
                    Example(
                        reply_id=reply_id,
                        sent=without_sign_off(reply.text, brand.sign_off, brand.name),
                        customer=Customer(customer_greeting(customer), old.author_handle, old.text),
                        embedding=self._embed([old.text])[0],
                    ),
                )
            self._examples[reply_id] = example
        return self._examples[reply_id]

    def _embed(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.analyzer.sentiment.encoder.embed(texts), dtype=np.float32)


def _reply_rules_of(settings: Settings, source: str) -> ReplyRules | None:
    """What the source's platform takes as a reply, so a model draft can be held to it."""
    try:
        cls = connector_types().get(settings.connector(source).type)
    except KeyError:
        return None
    return cls.reply_rules if cls else None


def _log_transition(name: str, report: IngestReport, failures_before: int) -> None:
    """Log when a connector starts failing and when it recovers, not on every run."""
    if report.error and failures_before == 0:
        log.warning("connector %s failed: %s", name, report.error)
    elif report.error:
        log.debug(
            "connector %s still failing (%d): %s", name, report.consecutive_failures, report.error
        )
    elif failures_before:
        log.info("connector %s recovered after %d failed runs", name, failures_before)

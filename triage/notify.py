"""The notify stage: cases that need a human become Slack cards, worst first, through the outbox.

`enqueue_cards` writes one slack_outbox row per card (key `card:<case>`, plus
`card:<case>:escalation` for P1s when an escalation channel is set); `flush` sends pending rows
in rank order, about one message per second per channel. Every chat.postMessage carries the row's
key in its message metadata, so after a crash or an unclear answer (5xx, dropped connection) the
outbox finds the message in the channel's history (a thread reply: in its thread) instead of
posting it again; it posts again only after a read to the end that lacks the key.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import uuid4

import sqlalchemy as sa
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from sqlmodel import col, select

from connectors.base import Connector
from connectors.registry import build_connector
from triage.clock import utcnow
from triage.config import ConfigError, Settings
from triage.drafts.check import Promises, check_draft
from triage.drafts.render import first_name
from triage.slack.cards import (
    CardView,
    DigestView,
    card_blocks,
    card_text,
    digest_blocks,
    digest_text,
    status_text,
)
from triage.slack.client import LONGEST_CALL_SECONDS
from triage.slack.text import cut
from triage.store import (
    Analysis,
    AuditEvent,
    Case,
    CaseStatus,
    Draft,
    Mention,
    OutboxStatus,
    SlackMessage,
    session_scope,
)
from triage.store.queries import (
    SPIKE_ALERTED,
    case_with_details,
    cases_to_notify,
    mark_sla_breached,
    queue_state,
    sla_due_cases,
)
from triage.views import excerpt

log = logging.getLogger(__name__)

METADATA_EVENT = "triage_outbox"
# A claim older than this is presumed to belong to a crashed worker. It outlasts the longest
# Slack call (429s waited out included), and the claim is renewed just before the call, so a slow
# post is never taken for a crashed one and posted again by another flush.
LEASE = timedelta(seconds=LONGEST_CALL_SECONDS + 60)
# How far back, before an attempt, the channel history is searched for its message.
HISTORY_SLACK = timedelta(seconds=30)
# Pages of history (or of a thread) read to find an earlier attempt's message before giving up.
LOOKUP_PAGES = 10
LOOKUP_PAGE_SIZE = 200
# Errors after which Slack may answer differently later (with any 5xx).
RETRYABLE_ERRORS = (
    "ratelimited",
    "fatal_error",
    "internal_error",
    "service_unavailable",
    "request_timeout",
)
PRIORITY_RANK = {"P1": 0, "P2": 1000, "P3": 2000, "P4": 3000}
# Share of the first-response target after which the card's thread gets a reminder.
SLA_REMINDER_SHARE = 0.75
# Card updates, thread replies and ephemerals go before new cards: someone is waiting for them.
UPDATE_RANK = -1
# How many of the worst due rows are looked at to find one whose channel may post now.
NEXT_WINDOW = 50
# While no card waits, how often the notify cycle looks for new cases.
IDLE_SECONDS = 0.5
# The care channel counts as busy this long after its last digest or a spike alert; its pinned
# status message is updated this often meanwhile.
CRISIS_AFTER_DIGEST = timedelta(minutes=15)
CRISIS_AFTER_SPIKE = timedelta(hours=3)
STATUS_EVERY = timedelta(minutes=1)
# How often the notify cycle looks at digests and the status message (cards: every send).
HOUSEKEEPING_SECONDS = 5.0


# Waiting P3/P4 cards a digest may hold back (not escalation copies, not a digest's own cards).
_HELD_BACK = (
    col(SlackMessage.status) == OutboxStatus.PENDING,
    col(SlackMessage.method) == "chat.postMessage",
    col(SlackMessage.key).startswith("card:"),
    col(SlackMessage.rank) >= PRIORITY_RANK["P3"],
    col(SlackMessage.digest).is_(None),
)
# Cases a digest names; the rest are counted.
DIGEST_TOP = 5
# Waiting P1/P2 cards a stack may take: new, never tried (an attempt may have posted one alone)
# and never refused inside a stack before.
_STACKABLE = (
    col(SlackMessage.status) == OutboxStatus.PENDING,
    col(SlackMessage.method) == "chat.postMessage",
    col(SlackMessage.key).startswith("card:"),
    col(SlackMessage.rank) < PRIORITY_RANK["P3"],
    col(SlackMessage.digest).is_(None),
    col(SlackMessage.attempts) == 0,
    col(SlackMessage.error).is_(None),
)
# How long before a channel may post its next stack is formed: carding and stacking take a
# moment, which would otherwise be added to every message's second.
STACK_LEAD = 0.25
# Cards per stack message, and Block Kit's limit on a message's blocks.
STACK_CARDS = 5
MESSAGE_BLOCKS = 50
STACK_PREFIX = "stack:"


def digest_view(session: Any, key: str) -> DigestView:
    """What a digest says about the cards it holds: counts by topic and language, the worst."""
    rows = session.exec(
        select(SlackMessage.case_id, Analysis, Mention)
        .join(Case, col(Case.id) == col(SlackMessage.case_id))
        .join(Mention, col(Mention.id) == col(Case.mention_id))
        .join(Analysis, col(Analysis.mention_id) == col(Mention.id))
        .where(SlackMessage.digest == key)
        .order_by(col(SlackMessage.rank), col(SlackMessage.id))
    ).all()
    intents: Counter[str] = Counter()
    languages: Counter[str] = Counter()
    for _, analysis, _ in rows:
        intents.update((analysis.intents or ["other"])[:1])
        languages[analysis.language] += 1
    top = [
        (a.priority, a.urgency, m.platform, excerpt(m.text, 90), case_id)
        for case_id, a, m in rows[:DIGEST_TOP]
    ]
    return DigestView(
        key=key,
        count=len(rows),
        by_intent=intents.most_common(8),
        by_language=languages.most_common(8),
        top=top,
    )


class NotConfirmed(Exception):
    """Whether an earlier attempt posted the message could not be found out; `final`: not ever."""

    def __init__(self, reason: str, *, final: bool):
        super().__init__(reason)
        self.final = final


def card_rank(priority: str, urgency: int) -> int:
    """Worst first: the band, then the score."""
    return PRIORITY_RANK.get(priority, 4000) + (100 - max(0, min(100, urgency)))


class Notifier:
    """Turns new cases into outbox rows and sends the outbox to Slack."""

    def __init__(
        self,
        settings: Settings,
        engine: sa.Engine,
        client: WebClient,
        *,
        sleep: Callable[[float], Any] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        connector_for: Callable[[str], Connector] | None = None,
    ):
        self.settings = settings
        self._connector_for = connector_for or (lambda s: build_connector(settings.connector(s)))
        self.engine = engine
        self.client = client
        self._sleep = sleep
        self._monotonic = monotonic
        self._last_post: dict[str, float] = {}
        self._housekept = -math.inf
        self._reply_info: dict[str, tuple[Any, str | None]] = {}

    def enqueue_cards(self, *, limit: int = 100) -> int:
        """Queue a card for every new case not queued yet; return how many."""
        slack = self.settings.slack
        if not slack.care_channel:
            return 0
        escalation = slack.escalation_channel
        queued = 0
        with session_scope(self.engine) as session:
            for case, mention, analysis, draft in cases_to_notify(session, limit=limit):
                channel = slack.channel_for(
                    analysis.language, mention.source, analysis.intents or (), analysis.priority
                )
                assert channel is not None  # care_channel is the default
                payload = {
                    **self.card_payload(case, mention, analysis, draft),
                    "unfurl_links": False,
                    "unfurl_media": False,
                }
                rank = card_rank(analysis.priority, analysis.urgency)
                targets = [(f"card:{case.id}", channel)]
                if escalation and (analysis.priority == "P1" or analysis.escalate):
                    targets.append((f"card:{case.id}:escalation", escalation))
                for key, target in targets:
                    session.add(
                        SlackMessage(
                            key=key,
                            method="chat.postMessage",
                            channel=target,
                            case_id=case.id,
                            rank=rank,
                            payload=payload,
                        )
                    )
                queued += 1
        return queued

    def card_payload(
        self,
        case: Case,
        mention: Mention,
        analysis: Analysis,
        draft: Draft | None,
        *,
        status_line: str | None = None,
        outcome: str | None = None,
    ) -> dict[str, Any]:
        """The card's text and blocks; plain text when its blocks cannot be built at all."""
        try:
            view = self.card_view(case, mention, analysis, draft)
            view = replace(view, status_line=status_line, outcome=outcome)
            return {"text": card_text(view), "blocks": card_blocks(view)}
        except Exception as exc:  # one case's card must never hold back the others
            log.error(
                "card of case %s could not be built (%s: %s); posting it as plain text",
                case.id,
                type(exc).__name__,
                exc,
            )
        plain = replace(self._base_view(case, mention, analysis), confidence=0.0, reasons=[])
        lines = [card_text(plain), *(line for line in (status_line, outcome) if line)]
        lines.append(f"_(case {case.id}: the full card could not be built; see the triage log)_")
        return {"text": "\n".join(lines)}

    @staticmethod
    def _base_view(case: Case, mention: Mention, analysis: Analysis) -> CardView:
        """The card's fields that come straight from the stored rows (all the fallback needs)."""
        return CardView(
            case_id=case.id or 0,
            priority=analysis.priority,
            urgency=analysis.urgency,
            source=mention.source,
            platform=mention.platform,
            text=mention.text,
            url=mention.url,
            language=analysis.language,
            sentiment=analysis.sentiment,
            confidence=max(analysis.p_negative, analysis.p_neutral, analysis.p_positive),
            reasons=list(analysis.reasons or []),
            author_name=mention.author_name,
            author_handle=mention.author_handle,
        )

    def card_view(
        self, case: Case, mention: Mention, analysis: Analysis, draft: Draft | None
    ) -> CardView:
        """What the card of a case shows, including what its platform allows for a reply."""
        rules, cannot_reply = self.reply_info(mention.source)
        return replace(
            self._base_view(case, mention, analysis),
            author_reach=mention.author_reach,
            rating=mention.rating,
            title=mention.title,
            created_at=mention.created_at,
            draft=draft.text if draft else None,
            draft_note=draft.note if draft else None,
            draft_hints=self.draft_hints(mention, analysis, draft, rules),
            reply_limit=rules.max_length if rules else None,
            reply_length=rules.length(draft.text) if rules and draft else None,
            cannot_reply=cannot_reply,
            escalate=analysis.escalate or analysis.priority == "P1",
            kind=analysis.kind,
            oncall_group=self.settings.slack.oncall_group,
            assignee=case.assignee,
        )

    def draft_hints(
        self, mention: Mention, analysis: Analysis, draft: Draft | None, rules: Any
    ) -> list[str]:
        """The checker's findings on the draft, as lines for the card."""
        if draft is None or not draft.text.strip():
            return []
        brand = self.settings.brand
        findings = check_draft(
            draft.text,
            language=draft.language,
            kind=analysis.kind,
            rules=rules,
            name=first_name(mention.author_name, mention.author_handle) or None,
            promises=Promises(brand.may_promise_refunds, brand.may_promise_compensation),
        )
        return [("Blocks sending: " if f.severity == "error" else "") + f.message for f in findings]

    def enqueue(
        self,
        *,
        key: str,
        method: str,
        channel: str,
        payload: dict[str, Any],
        case_id: int | None = None,
        rank: int = UPDATE_RANK,
    ) -> bool:
        """Queue one Slack write under `key`; False if that key was queued before."""
        with session_scope(self.engine) as session:
            exists = session.exec(select(SlackMessage.id).where(SlackMessage.key == key)).first()
            if exists is not None:
                return False
            session.add(
                SlackMessage(
                    key=key,
                    method=method,
                    channel=channel,
                    case_id=case_id,
                    rank=rank,
                    payload=payload,
                )
            )
        return True

    def update_cards(
        self, case_id: int, *, status_line: str | None = None, outcome: str | None = None
    ) -> int:
        """Queue chat.update for every posted card of a case; return how many."""
        with session_scope(self.engine) as session:
            found = case_with_details(session, case_id=case_id)
            if found is None:
                return 0
            payload = self.card_payload(*found, status_line=status_line, outcome=outcome)
            cards = session.exec(
                select(SlackMessage).where(
                    col(SlackMessage.key).in_((f"card:{case_id}", f"card:{case_id}:escalation")),
                    col(SlackMessage.ts).is_not(None),
                )
            ).all()
            targets = []
            for card in cards:
                if not (card.digest or "").startswith(STACK_PREFIX):
                    targets.append((card.channel, card.ts, payload))
                    continue
                # A stacked card is part of one message: its stored blocks become the new card
                # and the whole stack is sent again, the other cards as they last were.
                card.payload = {**card.payload, **payload}
                session.add(card)
                session.flush()
                stacked = session.exec(
                    select(SlackMessage)
                    .where(col(SlackMessage.digest) == card.digest)
                    .order_by(col(SlackMessage.rank), col(SlackMessage.id))
                ).all()
                targets.append((card.channel, card.ts, stack_payload(stacked)))
        for channel, ts, body in targets:
            self.enqueue(
                key=f"update:{case_id}:{uuid4().hex}",
                method="chat.update",
                channel=channel,
                payload={**body, "ts": ts},
                case_id=case_id,
            )
        return len(targets)

    def say(self, channel: str, user: str, text: str) -> None:
        """Queue an ephemeral message only `user` sees."""
        self.enqueue(
            key=f"ephemeral:{uuid4().hex}",
            method="chat.postEphemeral",
            channel=channel,
            payload={"user": user, "text": text},
        )

    def check_sla(self, *, now: datetime | None = None) -> int:
        """Queue a thread reminder at 75% of a case's first-response target and a breach ping."""
        now = now or utcnow()
        leads = self.settings.slack.leads_group
        targets = {priority: self.settings.sla.target(priority) for priority in PRIORITY_RANK}
        rows: list[SlackMessage] = []
        with session_scope(self.engine) as session:
            cases = sla_due_cases(
                session, now=now, targets=targets, reminder_share=SLA_REMINDER_SHARE
            )
        for case, mention, analysis in cases:
            target = self.settings.sla.target(analysis.priority)
            since = mention.created_at or case.created_at
            elapsed = (now - since).total_seconds()
            thread = {"thread_ts": case.slack_ts}
            if elapsed >= target:
                ping = f"<!subteam^{leads}> " if leads else ""
                text = (
                    f"{ping}:rotating_light: SLA breached: no first response after "
                    f"{duration_text(elapsed)} (the {analysis.priority} target is "
                    f"{duration_text(target)})."
                )
                key = f"sla-breach:{case.id}"
            elif elapsed >= SLA_REMINDER_SHARE * target:
                text = (
                    f":hourglass_flowing_sand: {duration_text(target - elapsed)} left to answer "
                    f"within the {analysis.priority} target of {duration_text(target)}."
                )
                key = f"sla-reminder:{case.id}"
            else:
                continue
            rows.append(
                SlackMessage(
                    key=key,
                    method="chat.postMessage",
                    channel=case.slack_channel or "",
                    case_id=case.id,
                    rank=UPDATE_RANK,
                    payload={"text": text, **thread},
                )
            )
        queued = self._enqueue_new(rows)
        breached = [
            row.case_id for row in rows if row.key.startswith("sla-breach:") and row.case_id
        ]
        if breached:
            with session_scope(self.engine) as session:
                mark_sla_breached(session, breached)
        return queued

    def _enqueue_new(self, rows: list[SlackMessage]) -> int:
        """Queue the rows whose key was never queued (as `enqueue` does one by one), in one
        transaction with one look-up; returns how many were queued."""
        if not rows:
            return 0
        keys = [row.key for row in rows]
        with session_scope(self.engine) as session:
            known: set[str] = set()
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                known.update(
                    session.exec(select(SlackMessage.key).where(col(SlackMessage.key).in_(chunk)))
                )
            fresh = [row for row in rows if row.key not in known]
            session.add_all(fresh)
        return len(fresh)

    def flush(self, *, limit: int = 200, budget: float | None = None, refill: bool = False) -> int:
        """Send pending outbox rows, the worst waiting one next each time, so a P1 queued
        meanwhile goes before the P3s already waiting; stop after `limit` sends or `budget`
        seconds. With `refill`, new cases become cards between sends. Returns how many went out."""
        started = self._monotonic()
        sent = 0
        passed: set[int] = set()  # rows this flush could not send: tried again next flush
        waited = False
        while sent < limit and (budget is None or self._monotonic() - started < budget):
            if refill:
                self.enqueue_cards()
                # Grouping and the status message can wait a few seconds; new cards cannot.
                if self._monotonic() - self._housekept >= HOUSEKEEPING_SECONDS:
                    self._housekept = self._monotonic()
                    self.digest()
                    self.crisis_status()
            self.stack()
            due = self._next_due(passed)
            if due is None:
                break
            row_id, channel = due
            if not waited and (wait := self._wait(channel, self._monotonic()) - STACK_LEAD) > 0:
                # No channel may post yet: wait, then look again, so cards that came meanwhile
                # are carded and stacked with the rest at the moment the channel may post.
                self._sleep(wait)
                waited = True
                continue
            waited = False
            if self._send(row_id):
                sent += 1
            else:
                passed.add(row_id)
        return sent

    def _crowded(self, session: Any, waiting: tuple, within: float) -> list[tuple[str, int]]:
        """Channels, with their count, whose `waiting` rows could not all be posted one by one
        within `within` seconds at [slack] post_interval."""
        capacity = within / max(self.settings.slack.post_interval, 1e-3)
        counts = session.exec(
            select(SlackMessage.channel, sa.func.count())
            .where(*waiting)
            .group_by(col(SlackMessage.channel))
        ).all()
        return [(channel, count) for channel, count in counts if count > capacity]

    def stack(self) -> int:
        """Put a channel's worst waiting P1/P2 cards, up to STACK_CARDS, in one message when the
        channel may post now and could not post them one by one within [slack] stack_after;
        returns how many stack messages were queued."""
        slack = self.settings.slack
        if not slack.stacks:
            return 0
        queued = 0
        now = self._monotonic()
        with session_scope(self.engine) as session:
            for channel, count in self._crowded(session, _STACKABLE, slack.stack_after):
                # Formed when the channel may post, a stack carries the worst of all that waited
                # by then: one formed before and never tried gives its cards back to choose from.
                if self._wait(channel, now) > STACK_LEAD or not self._unstack_untried(
                    session, channel
                ):
                    continue
                cards = session.exec(
                    select(SlackMessage)
                    .where(*_STACKABLE, col(SlackMessage.channel) == channel)
                    .order_by(col(SlackMessage.rank), col(SlackMessage.id))
                    .limit(STACK_CARDS)
                ).all()
                for group in _stack_groups(cards)[:1]:
                    key = f"{STACK_PREFIX}{channel}:{uuid4().hex[:12]}"
                    for card in group:
                        card.status, card.digest = OutboxStatus.STACKED, key
                        session.add(card)
                    session.add(
                        SlackMessage(
                            key=key,
                            method="chat.postMessage",
                            channel=channel,
                            # Before the cards left waiting at its worst card's rank: they came
                            # first, but the stack carries five.
                            rank=group[0].rank - 1,
                            payload={
                                **stack_payload(group),
                                "unfurl_links": False,
                                "unfurl_media": False,
                            },
                        )
                    )
                    queued += 1
                log.info("%s: %d P1/P2 cards waiting, the worst go out in a stack", channel, count)
        return queued

    @staticmethod
    def _unstack_untried(session: Any, channel: str) -> bool:
        """Give the cards of the channel's waiting, never tried stacks back to the queue; False
        when a stack tried before waits (it may have been posted: it goes as it is)."""
        waiting = session.exec(
            select(SlackMessage).where(
                col(SlackMessage.status) == OutboxStatus.PENDING,
                col(SlackMessage.key).startswith(f"{STACK_PREFIX}{channel}:"),
            )
        ).all()
        if any(stack.attempts for stack in waiting):
            return False
        for stack in waiting:
            for card in session.exec(
                select(SlackMessage).where(col(SlackMessage.digest) == stack.key)
            ):
                card.status, card.digest = OutboxStatus.PENDING, None
                session.add(card)
            session.delete(stack)
        session.flush()
        return True

    def digest(self) -> int:
        """Group each channel's waiting P3/P4 cards into one digest message when the channel
        could not post them within [slack] digest_after; returns how many digests were queued."""
        slack = self.settings.slack
        if not slack.digests:
            return 0
        queued = 0
        with session_scope(self.engine) as session:
            for channel, _count in self._crowded(session, _HELD_BACK, slack.digest_after):
                since = utcnow() - timedelta(seconds=slack.digest_every)
                if self._digested_since(session, channel, since):
                    continue
                key = f"digest:{channel}:{uuid4().hex[:12]}"
                session.execute(
                    sa.update(SlackMessage)
                    .where(*_HELD_BACK, col(SlackMessage.channel) == channel)
                    .values(status=OutboxStatus.DIGESTED, digest=key)
                )
                view = digest_view(session, key)
                session.add(
                    SlackMessage(
                        key=key,
                        method="chat.postMessage",
                        channel=channel,
                        # One message for many cases, at most one per digest_every: it goes
                        # first, or a backlog of P1s would hold back every case it names.
                        rank=UPDATE_RANK,
                        payload={
                            "text": digest_text(view),
                            "blocks": digest_blocks(view),
                            "unfurl_links": False,
                            "unfurl_media": False,
                        },
                    )
                )
                log.info("%s: %d P3/P4 cards grouped into %s", channel, view.count, key)
                queued += 1
        return queued

    @staticmethod
    def _digested_since(session: Any, channel: str, since: datetime) -> bool:
        """Whether the channel got a digest at or after `since`."""
        recent = session.exec(
            select(SlackMessage.id).where(
                col(SlackMessage.key).startswith(f"digest:{channel}:"),
                col(SlackMessage.created_at) >= since,
                col(SlackMessage.case_id).is_(None),  # as every digest: read from its index
            )
        ).first()
        return recent is not None

    def expand_digest(self, key: str) -> int:
        """Queue a digest's cards as replies in its thread; returns how many."""
        with session_scope(self.engine) as session:
            digest = session.exec(select(SlackMessage).where(SlackMessage.key == key)).first()
            if digest is None or not digest.ts:
                return 0
            held = session.exec(
                select(SlackMessage).where(
                    SlackMessage.digest == key, SlackMessage.status == OutboxStatus.DIGESTED
                )
            ).all()
            for row in held:
                row.payload = {**row.payload, "thread_ts": digest.ts}
                row.status = OutboxStatus.PENDING
                session.add(row)
            return len(held)

    def crisis_status(self, *, now: datetime | None = None) -> int:
        """While the care channel is busy (a digest in the last CRISIS_AFTER_DIGEST or a spike
        alert in the last CRISIS_AFTER_SPIKE), keep one pinned status message there, updated
        every STATUS_EVERY; unpin it with a last word when it is over. Returns rows queued."""
        channel = self.settings.slack.care_channel
        if not channel:
            return 0
        now = now or utcnow()
        prefix = f"status:{channel}:"
        with session_scope(self.engine) as session:
            busy = self._busy(session, channel, now)
            # Status rows have no case: `case_id IS NULL` reads them from the outbox's case_id
            # index instead of every card ever sent (a LIKE on the key uses no index).
            current = session.exec(
                select(SlackMessage)
                .where(
                    col(SlackMessage.key).startswith(prefix),
                    col(SlackMessage.method) == "chat.postMessage",
                    col(SlackMessage.case_id).is_(None),
                )
                .order_by(col(SlackMessage.id).desc())
            ).first()
            keys = set()
            if current is not None:
                keys = set(
                    session.exec(
                        select(SlackMessage.key).where(
                            col(SlackMessage.key).startswith(current.key + ":"),
                            col(SlackMessage.case_id).is_(None),
                        )
                    ).all()
                )
            # A status message Slack refused for good (a deleted channel) ends its crisis too,
            # so the next one gets a message of its own.
            over = (
                current is None
                or f"{current.key}:end" in keys
                or current.status == OutboxStatus.FAILED
            )
            rows: list[SlackMessage] = []
            if busy and over:
                text = status_text(queue_state(session, now=now), now=now)
                key = f"{prefix}{now:%Y%m%dT%H%M%S}-{uuid4().hex[:6]}"
                rows.append(self._status_row(key, channel, text))
            elif current is not None and not over and current.ts:
                if f"{current.key}:pin" not in keys:
                    rows.append(
                        self._status_row(
                            f"{current.key}:pin", channel, "", "pins.add", {"timestamp": current.ts}
                        )
                    )
                updates = session.exec(
                    select(sa.func.max(SlackMessage.created_at)).where(
                        col(SlackMessage.key).startswith(current.key + ":u"),
                        col(SlackMessage.case_id).is_(None),
                    )
                ).one()
                last = updates or current.created_at
                if not busy:
                    text = status_text(None, now=now, ended=True)
                    rows.append(
                        self._status_row(f"{current.key}:end", channel, text, ts=current.ts)
                    )
                    rows.append(
                        self._status_row(
                            f"{current.key}:unpin",
                            channel,
                            "",
                            "pins.remove",
                            {"timestamp": current.ts},
                        )
                    )
                elif now - last >= STATUS_EVERY:
                    text = status_text(queue_state(session, now=now), now=now)
                    n = sum(key.startswith(current.key + ":u") for key in keys)
                    rows.append(
                        self._status_row(f"{current.key}:u{n}", channel, text, ts=current.ts)
                    )
            for row in rows:
                session.add(row)
            return len(rows)

    @staticmethod
    def _status_row(
        key: str,
        channel: str,
        text: str,
        method: str | None = None,
        payload: dict[str, Any] | None = None,
        ts: str | None = None,
    ) -> SlackMessage:
        if method is None:
            method = "chat.update" if ts else "chat.postMessage"
            payload = {"text": text, **({"ts": ts} if ts else {"unfurl_links": False})}
        return SlackMessage(
            key=key, method=method, channel=channel, rank=UPDATE_RANK, payload=payload or {}
        )

    def _busy(self, session: Any, channel: str, now: datetime) -> bool:
        if self._digested_since(session, channel, now - CRISIS_AFTER_DIGEST):
            return True
        spiked = session.exec(
            select(AuditEvent.id).where(
                col(AuditEvent.action) == SPIKE_ALERTED,
                col(AuditEvent.at) >= now - CRISIS_AFTER_SPIKE,
            )
        ).first()
        return spiked is not None

    def cycle(
        self, *, budget: float, idle: float = IDLE_SECONDS, stop: threading.Event | None = None
    ) -> int:
        """The notify stage for about `budget` seconds, or until `stop`: SLA reminders, then
        cards as cases come (looking for new ones every `idle` seconds while nothing waits)."""
        started = self._monotonic()
        self.check_sla()
        sent = 0
        while (left := budget - (self._monotonic() - started)) > 0:
            if stop is not None and stop.is_set():
                break
            went = self.flush(budget=min(left, idle * 4), refill=True)
            sent += went
            if not went:
                self._sleep(min(idle, left))
        return sent

    def _next_due(self, passed: set[int]) -> tuple[int, str] | None:
        """The worst due row whose channel may post now, else the worst due row (paced), with
        its channel."""
        stale = utcnow() - LEASE
        with session_scope(self.engine) as session:
            statement = (
                select(SlackMessage.id, SlackMessage.channel)
                .where(
                    sa.or_(
                        col(SlackMessage.status) == OutboxStatus.PENDING,
                        sa.and_(
                            col(SlackMessage.status) == OutboxStatus.SENDING,
                            col(SlackMessage.attempt_at) < stale,
                        ),
                    ),
                    col(SlackMessage.id).not_in(passed),
                )
                .order_by(col(SlackMessage.rank), col(SlackMessage.id))
                .limit(NEXT_WINDOW)
            )
            rows = [(row_id, channel) for row_id, channel in session.exec(statement).all()]
        # Channels are paced apart: a channel that may post now does not wait behind another.
        now = self._monotonic()
        ready = next((row for row in rows if self._wait(row[1], now) <= 0), None)
        return ready if ready is not None else (rows[0] if rows else None)

    def _send(self, row_id: int) -> bool:
        row = self._claim(row_id)
        if row is None:
            return False
        looked_up = row.method == "chat.postMessage" and row.attempts > 1
        if looked_up:
            try:
                found = self._find_posted(row)
            except NotConfirmed as exc:
                # Posting blind could double the message: wait for a read that settles it.
                if exc.final:
                    log.error("not posting %s again: %s; not retrying", row.key, exc)
                    self._set(row, OutboxStatus.FAILED, str(exc))
                else:
                    log.warning("not posting %s again yet: %s; will look again", row.key, exc)
                    self._set(row, OutboxStatus.PENDING, str(exc))
                return False
            if found is not None:
                self._record_sent(row, found)
                return True
        self._pace(row.channel)
        # A lookup may outlast the claim's lease; a claim made a moment ago needs no renewal.
        if looked_up and not self._renew(row):
            log.warning("%s was taken over by another flush while it was looked up", row.key)
            return False
        try:
            response = self.client.api_call(row.method, json=self._request(row))
        except SlackApiError as exc:
            status = exc.response.status_code
            error = str(exc.response.get("error") or exc)
            if status >= 500 or error in RETRYABLE_ERRORS:
                self._release(row, error)  # unclear or temporary: try again next flush
            else:
                self._fail(row, error)
            return False
        except (SlackClientError, OSError) as exc:
            self._release(row, f"{type(exc).__name__}: {exc}")
            return False
        finally:
            self._last_post[row.channel] = self._monotonic()
        self._record_sent(row, dict(response.data) if isinstance(response.data, dict) else {})
        return True

    def _request(self, row: SlackMessage) -> dict[str, Any]:
        request = {**row.payload, "channel": row.channel}
        if row.method == "chat.postMessage":
            request["metadata"] = {
                "event_type": METADATA_EVENT,
                "event_payload": {"key": row.key},
            }
        return request

    def _claim(self, row_id: int) -> SlackMessage | None:
        """The row, marked as being sent by this flush; None if it is not due or another has it.

        One conditional UPDATE: of two flushes (or workers) only one can take a row.
        """
        now = utcnow()
        with session_scope(self.engine) as session:
            row = session.execute(
                sa.update(SlackMessage)
                .where(
                    col(SlackMessage.id) == row_id,
                    sa.or_(
                        col(SlackMessage.status) == OutboxStatus.PENDING,
                        sa.and_(
                            col(SlackMessage.status) == OutboxStatus.SENDING,
                            col(SlackMessage.attempt_at) < now - LEASE,
                        ),
                    ),
                )
                .values(
                    status=OutboxStatus.SENDING,
                    attempts=col(SlackMessage.attempts) + 1,
                    attempt_at=now,
                )
                .returning(SlackMessage)
                .execution_options(synchronize_session=False)
            ).scalar_one_or_none()
            if row is None:
                return None
            session.expunge(row)
            return row

    def _renew(self, row: SlackMessage) -> bool:
        """Restart the claim's clock right before the call; False if another flush has it now."""
        with session_scope(self.engine) as session:
            renewed = session.execute(
                sa.update(SlackMessage)
                .where(
                    col(SlackMessage.id) == row.id,
                    col(SlackMessage.status) == OutboxStatus.SENDING,
                    col(SlackMessage.attempts) == row.attempts,
                )
                .values(attempt_at=utcnow())
            )
            return renewed.rowcount == 1

    def _find_posted(self, row: SlackMessage) -> dict[str, Any] | None:
        """The message an earlier attempt posted, or None once a full read shows there is none.

        History never lists thread replies, so those are read from their thread; raises
        NotConfirmed when a page cannot be read or the pages run out before the key is found.
        """
        thread = row.payload.get("thread_ts")
        if thread:
            where = f"thread {thread} in {row.channel}"
            read = partial(self.client.conversations_replies, channel=row.channel, ts=thread)
        else:
            since = (row.created_at - HISTORY_SLACK).timestamp()
            where = f"{row.channel} history"
            read = partial(
                self.client.conversations_history, channel=row.channel, oldest=f"{since:.6f}"
            )
        cursor: str | None = None
        for _ in range(LOOKUP_PAGES):
            try:
                page = read(cursor=cursor, include_all_metadata=True, limit=LOOKUP_PAGE_SIZE)
            except SlackApiError as exc:
                error = str(exc.response.get("error") or exc)
                retry = exc.response.status_code >= 500 or error in RETRYABLE_ERRORS
                raise NotConfirmed(f"could not read {where}: {error}", final=not retry) from exc
            except (SlackClientError, OSError) as exc:
                reason = f"could not read {where}: {type(exc).__name__}: {exc}"
                raise NotConfirmed(reason, final=False) from exc
            for message in page.get("messages") or []:
                metadata = message.get("metadata") or {}
                if (
                    metadata.get("event_type") == METADATA_EVENT
                    and (metadata.get("event_payload") or {}).get("key") == row.key
                ):
                    return {"ok": True, "channel": row.channel, "ts": message.get("ts")}
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor and page.get("has_more"):
                raise NotConfirmed(f"{where}: more pages but no cursor to them", final=True)
            if not cursor:
                return None
        # A later look would only have more to read: the message may be there, so never post.
        raise NotConfirmed(
            f"{where} not read to the end ({LOOKUP_PAGES} pages of {LOOKUP_PAGE_SIZE})",
            final=True,
        )

    def _record_sent(self, row: SlackMessage, response: dict[str, Any]) -> None:
        now = utcnow()
        ts = response.get("ts") or (response.get("message") or {}).get("ts")
        channel = response.get("channel") or row.channel
        with session_scope(self.engine) as session:
            stored = session.get(SlackMessage, row.id)
            if stored is None:
                return
            stored.status = OutboxStatus.SENT
            stored.ts = ts
            stored.sent_at = now
            stored.error = None
            session.add(stored)
            cards = [stored]
            if row.key.startswith(STACK_PREFIX):
                cards = list(
                    session.exec(select(SlackMessage).where(SlackMessage.digest == row.key)).all()
                )
                for card in cards:
                    card.status, card.ts, card.sent_at = OutboxStatus.SENT, ts, now
                    session.add(card)
            for card in cards:
                if card.case_id is None or card.key != f"card:{card.case_id}":
                    continue
                case = session.get(Case, card.case_id)
                if case is not None:
                    case.slack_channel, case.slack_ts = channel, ts
                    if case.status == CaseStatus.NEW:
                        case.status = CaseStatus.POSTED
                        case.posted_at = now
                    session.add(case)

    def _release(self, row: SlackMessage, error: str) -> None:
        log.warning("Slack %s for %s failed (%s); will retry", row.method, row.key, error)
        self._set(row, OutboxStatus.PENDING, error)

    def _fail(self, row: SlackMessage, error: str) -> None:
        log.error("Slack refused %s for %s: %s; not retrying", row.method, row.key, error)
        self._set(row, OutboxStatus.FAILED, error)
        if row.key.startswith(STACK_PREFIX):
            self._unstack(row.key, error)

    def _unstack(self, key: str, error: str) -> None:
        """The cards of a stack Slack refused go out one by one (and are never stacked again)."""
        with session_scope(self.engine) as session:
            given_back = session.execute(
                sa.update(SlackMessage)
                .where(
                    col(SlackMessage.digest) == key,
                    col(SlackMessage.status) == OutboxStatus.STACKED,
                )
                .values(
                    status=OutboxStatus.PENDING,
                    digest=None,
                    error=f"its stack {key} was refused: {error}"[:2000],
                )
            )
        log.warning("%d cards of %s go out one by one", given_back.rowcount, key)

    def _set(self, row: SlackMessage, status: OutboxStatus, error: str) -> None:
        with session_scope(self.engine) as session:
            stored = session.get(SlackMessage, row.id)
            if stored is not None:
                stored.status = status
                stored.error = error[:2000]
                session.add(stored)

    def _wait(self, channel: str, now: float) -> float:
        last = self._last_post.get(channel)
        return 0.0 if last is None else self.settings.slack.post_interval - (now - last)

    def _pace(self, channel: str) -> None:
        wait = self._wait(channel, self._monotonic())
        if wait > 0:
            self._sleep(wait)

    def reply_info(self, source: str) -> tuple[Any, str | None]:
        """The source's reply rules and, when it cannot reply, why (cached per source)."""
        if source not in self._reply_info:
            try:
                with self._connector_for(source) as connector:
                    info = (connector.reply_rules, connector.reply_unavailable())
            except (KeyError, ConfigError):
                info = (None, f"connector {source!r} is not configured any more")
            self._reply_info[source] = info
        return self._reply_info[source]


def _stack_groups(cards: list[SlackMessage]) -> list[list[SlackMessage]]:
    """Cards, in order, in groups of at most STACK_CARDS whose blocks fit one message."""
    groups: list[list[SlackMessage]] = []
    blocks = 0
    for card in cards:
        size = len(card.payload.get("blocks") or []) or 1
        if groups and len(groups[-1]) < STACK_CARDS and blocks + 1 + size <= MESSAGE_BLOCKS:
            groups[-1].append(card)
            blocks += 1 + size
        else:
            groups.append([card])
            blocks = size
    return groups


def stack_payload(cards: list[SlackMessage]) -> dict[str, Any]:
    """One message holding several cards, a divider between them; a card without blocks (its
    plain-text fallback) becomes a section of its text."""
    blocks: list[dict[str, Any]] = []
    for card in cards:
        if blocks:
            blocks.append({"type": "divider"})
        blocks.extend(
            card.payload.get("blocks")
            or [{"type": "section", "text": {"type": "plain_text", "text": card.payload["text"]}}]
        )
    texts = [str(card.payload.get("text", "")) for card in cards]
    return {"text": cut(f"{len(cards)} urgent cases: " + " | ".join(texts), 3000), "blocks": blocks}


def duration_text(seconds: float) -> str:
    """A span as people say it: 4 min, 2 h 10 min, 3 days."""
    minutes = round(max(0.0, seconds) / 60)
    if minutes < 60:
        return f"{max(1, minutes)} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days"

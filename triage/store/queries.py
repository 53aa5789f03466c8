"""Small keyword-only query functions; callers own the transaction (see session_scope)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel, col, select

from models.labels import PROBLEMS
from models.urgency import CUE_LABELS
from triage.clock import as_utc, utcnow
from triage.domain import NewMention
from triage.store.clean import storable_mentions
from triage.store.tables import (
    OPEN_STATUSES,
    WORD_LENGTH,
    Analysis,
    AuditEvent,
    Case,
    CaseStatus,
    CaseTiming,
    ConnectorState,
    Draft,
    Mention,
    OutboundReply,
    OutboxStatus,
    ReplyStatus,
    ReportHour,
    ReportWord,
    SlackMessage,
    UTCDateTime,
    in_inline,
)
from triage.words import topic_words

PRIORITY_ORDER = sa.case({"P1": 1, "P2": 2, "P3": 3, "P4": 4}, value=Analysis.priority, else_=5)


def _open() -> Any:
    """Open cases, written so the partial index of open cases serves the query."""
    return in_inline(col(Case.status), OPEN_STATUSES)


def _insert_ignoring_duplicates(session: Session, table: type[SQLModel] = Mention) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"unsupported database dialect {dialect!r}")


def save_batch(
    session: Session, *, source: str, mentions: Sequence[NewMention], cursor: str | None
) -> int:
    """Store new mentions (duplicates ignored) and their cursor; return how many were new.

    A mention that cannot be stored as it is gets clamped, or skipped, with a log line (clean.py).
    """
    new = 0
    mentions = storable_mentions(source, mentions)
    if mentions:
        now = utcnow()
        rows = [_mention_row(mention, source=source, fetched_at=now) for mention in mentions]
        statement = (
            _insert_ignoring_duplicates(session)
            .on_conflict_do_nothing(index_elements=["source", "external_id"])
            .returning(Mention.id)
        )
        # One statement per row: RETURNING with ON CONFLICT only reports the rows it inserted.
        for row in rows:
            if session.execute(statement, row).first() is not None:
                new += 1
    state = get_state(session, name=source)
    state.cursor = cursor
    if new:
        # Added in SQL, not in Python: concurrent batches of one source (webhooks) never lose a
        # count, and the count commits or rolls back with its mentions.
        state.mention_count = ConnectorState.mention_count + new  # type: ignore[assignment]
    session.add(state)
    return new


def _mention_row(mention: NewMention, *, source: str, fetched_at: datetime) -> dict[str, Any]:
    row = asdict(mention)
    row["source"] = source
    row["fetched_at"] = fetched_at
    row["raw"] = mention.raw or None
    return row


def get_state(session: Session, *, name: str) -> ConnectorState:
    """The connector's state row, created empty on first use."""
    state = session.get(ConnectorState, name)
    if state is None:
        # Concurrent first deliveries of a new webhook would each insert the row: the first
        # wins and the others find it, instead of failing on the primary key.
        session.execute(
            _insert_ignoring_duplicates(session, ConnectorState)
            .values(ConnectorState(name=name).model_dump())
            .on_conflict_do_nothing(index_elements=["name"])
        )
        state = session.get_one(ConnectorState, name)
    return state


def record_run(
    session: Session, *, name: str, error: str | None, at: datetime | None = None
) -> ConnectorState:
    """Note a finished run: success resets the failure count, an error increments it."""
    at = at or utcnow()
    state = get_state(session, name=name)
    state.last_run_at = at
    if error is None:
        state.last_success_at = at
        state.consecutive_failures = 0
    else:
        state.last_error = error
        state.last_error_at = at
        state.consecutive_failures += 1
    session.add(state)
    return state


def connector_states(session: Session) -> dict[str, ConnectorState]:
    return {state.name: state for state in session.exec(select(ConnectorState)).all()}


def mention_counts(session: Session) -> dict[str, int]:
    """How many mentions each source has stored (kept by save_batch: nothing is counted here)."""
    statement = select(ConnectorState.name, ConnectorState.mention_count).where(
        col(ConnectorState.mention_count) > 0
    )
    return {source: int(count) for source, count in session.exec(statement).all()}


def unanalyzed_mentions(session: Session, *, limit: int) -> list[Mention]:
    """Mentions with no analysis yet, oldest first.

    Read from the partial index of mentions not flagged `analyzed` (the pipeline flags each one
    with its analysis), so the cost follows the backlog, not the history; the anti-join keeps
    the answer exact for an analysis stored any other way.
    """
    analysed = sa.exists().where(col(Analysis.mention_id) == col(Mention.id))
    statement = (
        select(Mention)
        .where(sa.not_(col(Mention.analyzed)), ~analysed)
        .order_by(col(Mention.id))
        .limit(limit)
    )
    return list(session.exec(statement).all())


def count_recent_by_author(
    session: Session, *, platform: str, handle: str, since: datetime, before_id: int
) -> int:
    """How many earlier mentions the same author posted on the platform since `since`.

    Two counts, each a range of the index on (author_handle, platform, created_at, id): those
    without a time of their own, and those since `since`.
    """

    def count(when: Any) -> Any:
        return (
            select(sa.func.count())
            .select_from(Mention)
            .where(
                Mention.author_handle == handle,
                Mention.platform == platform,
                when,
                col(Mention.id) < before_id,
            )
            .scalar_subquery()
        )

    untimed = count(col(Mention.created_at).is_(None))
    recent = count(col(Mention.created_at) >= since)
    return int(session.exec(select(untimed + recent)).one())


def cases_without_draft(session: Session, *, limit: int) -> list[tuple[Case, Mention, Analysis]]:
    """Open cases that have no draft yet (and have their analysis).

    The open cases are sieved on the draft and analysis indexes first, so only the cases
    returned are read in full, not every open case's mention and analysis.
    """
    drafted = sa.exists().where(col(Draft.mention_id) == col(Case.mention_id))
    analysed = sa.exists().where(col(Analysis.mention_id) == col(Case.mention_id))
    waiting = (
        select(col(Case.id).label("case_id"))
        .where(_open(), ~drafted, analysed)
        .order_by(col(Case.id))
        .limit(limit)
        .subquery()
    )
    statement = (
        select(Case, Mention, Analysis)
        .join(waiting, waiting.c.case_id == col(Case.id))
        .join(Mention, col(Mention.id) == col(Case.mention_id))
        .join(Analysis, col(Analysis.mention_id) == col(Mention.id))
        .order_by(col(Case.id))
    )
    return [tuple(row) for row in session.exec(statement).all()]  # type: ignore[misc]


def open_queue(
    session: Session, *, limit: int = 50
) -> list[tuple[Case, Mention, Analysis, Draft | None]]:
    """Open cases, worst first: priority band, then urgency, then the oldest.

    The open cases come from their partial index, and only their sort keys are sorted (in
    memory); the full rows are read for the `limit` cases shown.
    """
    top = (
        select(
            col(Case.id).label("case_id"),
            PRIORITY_ORDER.label("band"),
            col(Analysis.urgency).label("urgency"),
            col(Mention.created_at).label("created_at"),
        )
        .join(Mention, col(Mention.id) == col(Case.mention_id))
        .join(Analysis, col(Analysis.mention_id) == col(Mention.id))
        .where(_open())
        .order_by(
            PRIORITY_ORDER, col(Analysis.urgency).desc(), col(Mention.created_at), col(Case.id)
        )
        .limit(limit)
        .subquery()
    )
    statement = (
        select(Case, Mention, Analysis, Draft)
        .join(top, top.c.case_id == col(Case.id))
        .join(Mention, col(Mention.id) == col(Case.mention_id))
        .join(Analysis, col(Analysis.mention_id) == col(Mention.id))
        .outerjoin(Draft, col(Draft.mention_id) == col(Mention.id))
        .order_by(top.c.band, top.c.urgency.desc(), top.c.created_at, col(Case.id))
    )
    return [tuple(row) for row in session.exec(statement).all()]  # type: ignore[misc]


def case_with_details(
    session: Session, *, case_id: int
) -> tuple[Case, Mention, Analysis, Draft | None] | None:
    """One case with its mention, analysis and draft."""
    statement = (
        select(Case, Mention, Analysis, Draft)
        .join(Mention, col(Mention.id) == col(Case.mention_id))
        .join(Analysis, col(Analysis.mention_id) == col(Mention.id))
        .outerjoin(Draft, col(Draft.mention_id) == col(Mention.id))
        .where(col(Case.id) == case_id)
    )
    row = session.exec(statement).first()
    return tuple(row) if row is not None else None  # type: ignore[return-value]


def cases_to_notify(
    session: Session, *, limit: int
) -> list[tuple[Case, Mention, Analysis, Draft | None]]:
    """New cases with no Slack card queued yet, worst first."""
    # Correlated on the indexed slack_outbox.case_id: the cost follows the new cases, not the
    # whole outbox (a NOT IN read every outbox row, about once a second in the notify cycle).
    queued = sa.exists().where(col(SlackMessage.case_id) == col(Case.id))
    statement = (
        select(Case, Mention, Analysis, Draft)
        .join(Mention, col(Mention.id) == col(Case.mention_id))
        .join(Analysis, col(Analysis.mention_id) == col(Mention.id))
        .outerjoin(Draft, col(Draft.mention_id) == col(Mention.id))
        .where(col(Case.status) == CaseStatus.NEW, ~queued)
        .order_by(PRIORITY_ORDER, col(Analysis.urgency).desc(), col(Case.id))
        .limit(limit)
    )
    return [tuple(row) for row in session.exec(statement).all()]  # type: ignore[misc]


# The audit action of a spike alert (triage/reports/spikes.py); the care channel's status reads it.
SPIKE_ALERTED = "spike_alerted"


def audit(
    session: Session,
    *,
    actor: str,
    action: str,
    case_id: int | None = None,
    before: str | None = None,
    after: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    event = AuditEvent(
        actor=actor, action=action, case_id=case_id, before=before, after=after, detail=detail
    )
    session.add(event)
    return event


def set_paused(session: Session, *, name: str, paused: bool) -> ConnectorState:
    """Pause or resume a connector; the scheduler skips a paused one."""
    state = get_state(session, name=name)
    state.paused = paused
    session.add(state)
    return state


def mentions_since(session: Session, *, since: datetime) -> int:
    statement = select(sa.func.count()).select_from(Mention).where(Mention.fetched_at >= since)
    return int(session.exec(statement).one())


def sentiment_mix(session: Session, *, since: datetime) -> dict[str, int]:
    """How many mentions analysed since `since` were negative, neutral, positive."""
    statement = (
        select(Analysis.sentiment, sa.func.count())
        .join(Mention, col(Mention.id) == col(Analysis.mention_id))
        .where(Mention.fetched_at >= since)
        .group_by(Analysis.sentiment)
    )
    return {sentiment: int(count) for sentiment, count in session.exec(statement).all()}


def replied_since(session: Session, *, since: datetime) -> list[tuple[Case, Analysis]]:
    """Cases answered since `since`, with the priority they had."""
    statement = (
        select(Case, Analysis)
        .join(Analysis, col(Analysis.mention_id) == col(Case.mention_id))
        .where(col(Case.replied_at) >= since)
    )
    return [tuple(row) for row in session.exec(statement).all()]  # type: ignore[misc]


def open_by_priority(session: Session) -> dict[str, int]:
    statement = (
        select(Analysis.priority, sa.func.count())
        .join(Case, col(Case.mention_id) == col(Analysis.mention_id))
        .where(_open())
        .group_by(Analysis.priority)
    )
    return {priority: int(count) for priority, count in session.exec(statement).all()}


def assigned_open(
    session: Session, *, user: str, limit: int = 20
) -> list[tuple[Case, Mention, Analysis]]:
    """Open cases assigned to `user`, worst first."""
    statement = (
        select(Case, Mention, Analysis)
        .join(Mention, col(Mention.id) == col(Case.mention_id))
        .join(Analysis, col(Analysis.mention_id) == col(Mention.id))
        .where(_open(), Case.assignee == user)
        .order_by(PRIORITY_ORDER, col(Analysis.urgency).desc())
        .limit(limit)
    )
    return [tuple(row) for row in session.exec(statement).all()]  # type: ignore[misc]


# The SLA check's time test is a sieve: it lets through cases up to this much before their
# moment, and the check itself decides to the microsecond, as it always has.
SLA_SIEVE = timedelta(seconds=1)


def sla_due_cases(
    session: Session, *, now: datetime, targets: Mapping[str, float], reminder_share: float
) -> list[tuple[Case, Mention, Analysis]]:
    """Open cases whose card is in Slack, with no first response yet and no SLA breach ping
    queued, that the SLA check has something to say about at `now`: past `reminder_share` of
    their priority's first-response target (`targets`, in seconds) with no reminder queued
    yet, or past the whole target.

    The open cases not yet flagged `sla_breached` come from their partial index; a case is
    read in full only when it is due, and never again after its breach ping (`mark_sla_breached`).
    """
    since = sa.func.coalesce(col(Mention.created_at), col(Case.created_at))

    def queued(prefix: str) -> Any:
        # The key names the case: one probe of the unique key index (an index-only scan on
        # PostgreSQL), not every outbox row of the case.
        return sa.exists().where(
            col(SlackMessage.key) == sa.literal(prefix) + sa.cast(col(Case.id), sa.String)
        )

    def past(share: float) -> Any:
        return sa.or_(
            *(
                sa.and_(
                    col(Analysis.priority) == priority,
                    since <= now - timedelta(seconds=share * target) + SLA_SIEVE,
                )
                for priority, target in targets.items()
            ),
            col(Analysis.priority).not_in(list(targets)),
        )

    statement = (
        select(Case, Mention, Analysis)
        .join(Mention, col(Mention.id) == col(Case.mention_id))
        .join(Analysis, col(Analysis.mention_id) == col(Mention.id))
        .where(
            _open(),
            sa.not_(col(Case.sla_breached)),
            col(Case.slack_ts).is_not(None),
            col(Case.replied_at).is_(None),
            ~queued("sla-breach:"),
            past(reminder_share),
            sa.or_(~queued("sla-reminder:"), past(1.0)),
        )
    )
    return [tuple(row) for row in session.exec(statement).all()]  # type: ignore[misc]


def mark_sla_breached(session: Session, case_ids: Sequence[int]) -> None:
    """Flag cases whose SLA breach ping is queued: the SLA check stops reading them."""
    for start in range(0, len(case_ids), 500):
        chunk = list(case_ids[start : start + 500])
        session.execute(sa.update(Case).where(col(Case.id).in_(chunk)).values(sla_breached=True))


def prune_raw(session: Session, *, before: datetime, limit: int = 5000) -> int:
    """Drop the platform payload of up to `limit` mentions fetched before `before`, except those
    of open cases (a reply reads its ids there); returns how many were pruned."""
    open_case = sa.exists().where(col(Case.mention_id) == col(Mention.id), _open())
    chosen = (
        select(Mention.id)
        .where(col(Mention.fetched_at) < before, col(Mention.raw).is_not(None), ~open_case)
        # Oldest first, which also keeps PostgreSQL on ix_mention_raw_kept: it would otherwise
        # guess that half the old mentions still have a payload and scan the table.
        .order_by(col(Mention.fetched_at))
        .limit(limit)
    )
    ids = list(session.exec(chosen).all())
    if ids:
        # SQL NULL, not the JSON null a Python None would be stored as.
        session.execute(sa.update(Mention).where(col(Mention.id).in_(ids)).values(raw=sa.null()))
    return len(ids)


def _sender() -> Any:
    """Who sent the reply to the mention of the row: the first sender in name order, if any."""
    return (
        select(sa.func.min(OutboundReply.requested_by))
        .where(
            col(OutboundReply.mention_id) == col(Mention.id),
            OutboundReply.status == ReplyStatus.SENT,
        )
        .scalar_subquery()
    )


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One analysed mention as the report (and its CSV) sees it: no payload."""

    mention_id: int
    created_at: datetime  # when it was posted, else when triage stored it
    source: str
    platform: str
    language: str
    sentiment: str
    kind: str
    priority: str
    urgency: int
    intents: tuple[str, ...]
    text: str
    url: str | None
    status: str | None
    first_response_seconds: float | None
    resolution_seconds: float | None  # from the post to the reply, else the dismissal
    agent: str | None  # who sent the reply, else the assignee of a case marked replied


def analyzed_between(session: Session, *, since: datetime, until: datetime) -> Iterator[ReportRow]:
    """Mentions posted in [since, until) with their analysis, case and who sent the reply,
    oldest first, streamed.

    A mention without its own time (sources need not give one) counts when triage stored it.
    """
    return _analyzed(session, _posted_between(since, until))


def analyzed_by_id(session: Session, *, mention_ids: Sequence[int]) -> Iterator[ReportRow]:
    """analyzed_between for a few mentions, by id."""
    return _analyzed(session, col(Mention.id).in_(list(mention_ids)))


def _analyzed(session: Session, which: Any) -> Iterator[ReportRow]:
    # Columns, not whole rows: a report never reads the payloads.
    statement = (
        select(
            col(Mention.id),
            _posted(),
            Mention.source,
            Mention.platform,
            Analysis.language,
            Analysis.sentiment,
            Analysis.kind,
            Analysis.priority,
            Analysis.urgency,
            Analysis.intents,
            Mention.text,
            Mention.url,
            Case.status,
            Case.first_response_seconds,
            Case.replied_at,
            Case.dismissed_at,
            Case.assignee,
            _sender(),
        )
        .join(Analysis, col(Analysis.mention_id) == col(Mention.id))
        .join(Case, col(Case.mention_id) == col(Mention.id), isouter=True)
        .where(which)
        .order_by(_posted(), col(Mention.id))
    )
    for found in session.execute(statement.execution_options(yield_per=1000)):
        *columns, intents, text, url, status, first, replied, dismissed, assignee, sender = found
        resolved = replied or dismissed
        yield ReportRow(
            *columns,
            intents=tuple(intents or ()),
            text=text,
            url=url,
            status=status,
            first_response_seconds=first,
            resolution_seconds=(resolved - columns[1]).total_seconds() if resolved else None,
            agent=sender or (assignee if replied else None),
        )


def sent_with_drafts(
    session: Session, *, since: datetime, until: datetime
) -> list[tuple[str, str, str, str]]:
    """Replies sent in [since, until), each as (language, draft generator, draft, sent text), in
    no particular order (the report counts them)."""
    rows = session.exec(
        select(Analysis.language, Draft.generator, Draft.text, OutboundReply.text)
        .join(Draft, Draft.mention_id == OutboundReply.mention_id)
        .join(Analysis, Analysis.mention_id == OutboundReply.mention_id)
        .where(OutboundReply.status == ReplyStatus.SENT)
        .where(col(OutboundReply.sent_at) >= since, col(OutboundReply.sent_at) < until)
    ).all()
    return [(language, generator, draft, sent) for language, generator, draft, sent in rows]


def sent_examples(
    session: Session, *, language: str, kind: str, limit: int = 200
) -> list[tuple[OutboundReply, Draft, Mention]]:
    """The latest replies sent to mentions of this language and kind, with draft and mention."""
    rows = session.exec(
        select(OutboundReply, Draft, Mention)
        .join(Draft, Draft.mention_id == OutboundReply.mention_id)
        .join(Mention, Mention.id == OutboundReply.mention_id)
        .join(Analysis, Analysis.mention_id == OutboundReply.mention_id)
        .where(OutboundReply.status == ReplyStatus.SENT)
        .where(Analysis.language == language, Analysis.kind == kind)
        .order_by(col(OutboundReply.sent_at).desc(), col(OutboundReply.id).desc())
        .limit(limit)
    ).all()
    return [(reply, draft, mention) for reply, draft, mention in rows]


@dataclass(frozen=True, slots=True)
class QueueState:
    """How busy the queue is: for the status message a busy care channel keeps pinned."""

    mentions_last_hour: int
    top_topics: list[tuple[str, int]]
    not_posted: int
    in_digests: int
    oldest_waiting_p1: datetime | None
    oldest_p1_case: int | None


def queue_state(session: Session, *, now: datetime) -> QueueState:
    """Mentions analysed in the last hour, what the cases opened then are about, how many wait."""
    hour_ago = now - timedelta(hours=1)
    mentions = session.exec(
        select(sa.func.count()).select_from(Analysis).where(col(Analysis.analyzed_at) >= hour_ago)
    ).one()
    topics: Counter[str] = Counter()
    for intents in session.exec(
        select(Analysis.intents)
        .join(Case, col(Case.mention_id) == col(Analysis.mention_id))
        .where(col(Case.created_at) >= hour_ago)
    ).all():
        topics.update((intents or ["other"])[:1])
    not_posted = session.exec(
        select(sa.func.count()).select_from(Case).where(col(Case.status) == CaseStatus.NEW)
    ).one()
    in_digests = session.exec(
        select(sa.func.count())
        .select_from(SlackMessage)
        .where(col(SlackMessage.status) == OutboxStatus.DIGESTED)
    ).one()
    oldest = session.exec(
        select(Case.created_at, Case.id)
        .join(Analysis, col(Analysis.mention_id) == col(Case.mention_id))
        .where(
            col(Analysis.priority) == "P1",
            col(Case.status).in_([CaseStatus.NEW, CaseStatus.POSTED]),
        )
        .order_by(col(Case.created_at), col(Case.id))
        .limit(1)
    ).first()
    return QueueState(
        mentions_last_hour=int(mentions),
        top_topics=topics.most_common(5),
        not_posted=int(not_posted),
        in_digests=int(in_digests),
        oldest_waiting_p1=oldest[0] if oldest else None,
        oldest_p1_case=oldest[1] if oldest else None,
    )


# --- report rollups (report_hour) --------------------------------------------------------------


def complaint_category(intent: str) -> str | None:
    """The problem label (models/labels.py) a stored intent names, else None: questions, praise,
    feedback, spam, the modifiers (vulnerable, repeat contact) and the cue signals older analyses
    stored (anger, sarcasm, waiting) are no complaint category."""
    label = CUE_LABELS.get(intent, intent)
    return label if label in PROBLEMS else None


def _posted() -> Any:
    """When a mention was posted, else stored: the expression of the index ix_mention_posted."""
    return sa.func.coalesce(col(Mention.created_at), col(Mention.fetched_at), type_=UTCDateTime)


def _posted_between(since: datetime, until: datetime) -> Any:
    return sa.and_(_posted() >= since, _posted() < until)


def _rollup_sql(dialect: str, where: str) -> str:
    """INSERT ... SELECT of the rollup rows of the analysed mentions matching `where` (SQL on
    `mention` and `analysis`), added to what report_hour holds."""
    posted = "coalesce(mention.created_at, mention.fetched_at)"
    if dialect == "sqlite":
        # UTCDateTime's text form in SQLite, so hours compare with bound times.
        hour = f"strftime('%Y-%m-%d %H:00:00.000000', {posted})"
        intents = "json_each(analysis.intents) AS intent"
        least = "min"
    elif dialect == "postgresql":
        hour = f"date_trunc('hour', {posted} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
        intents = (
            "LATERAL json_array_elements_text(CASE WHEN json_typeof(analysis.intents) = 'array'"
            " THEN analysis.intents ELSE '[]'::json END) AS intent(value)"
        )
        least = "least"
    else:
        raise RuntimeError(f"unsupported database dialect {dialect!r}")
    names = {*PROBLEMS, *CUE_LABELS}
    category = " ".join(
        f"WHEN '{name}' THEN '{complaint_category(name)}'"
        for name in sorted(names)
        if complaint_category(name)
    )
    columns = "mention.id AS mention_id, mention.source, analysis.language, analysis.sentiment"
    # Each complaint category once per mention, as the report counts them.
    return f"""
        INSERT INTO report_hour (hour, source, language, sentiment, category, n, first_at, first_id)
        SELECT hour, source, language, sentiment, category, count(*), min(posted), min(mention_id)
        FROM (
            SELECT {columns}, {hour} AS hour, {posted} AS posted, '' AS category
            FROM mention JOIN analysis ON analysis.mention_id = mention.id
            WHERE {where}
            UNION ALL
            SELECT DISTINCT {columns}, {hour} AS hour, {posted} AS posted,
                CASE intent.value {category} END AS category
            FROM mention JOIN analysis ON analysis.mention_id = mention.id, {intents}
            WHERE {where} AND analysis.kind = 'complaint'
                AND CASE intent.value {category} END IS NOT NULL
        ) AS counted
        WHERE true
        GROUP BY hour, source, language, sentiment, category
        ON CONFLICT (hour, source, language, sentiment, category) DO UPDATE SET
            n = report_hour.n + excluded.n,
            first_at = {least}(report_hour.first_at, excluded.first_at),
            first_id = {least}(report_hour.first_id, excluded.first_id)
    """


def count_analysed(session: Session, *, mention_ids: Sequence[int]) -> None:
    """Add the analyses of these mentions to the report rollups, grouped, in one upsert per 500
    (in the caller's transaction: the analyses must be flushed, and counted only once)."""
    statement = _rollup_sql(session.get_bind().dialect.name, "analysis.mention_id IN :ids")
    for start in range(0, len(mention_ids), 500):
        chunk = list(mention_ids[start : start + 500])
        session.execute(sa.text(statement).bindparams(sa.bindparam("ids", chunk, expanding=True)))
        negative = _negative_words(col(Analysis.mention_id).in_(chunk))
        _add_words(session.connection(), Counter(_word_days(session.execute(negative))))


def rebuild_rollups(connection: sa.Connection) -> None:
    """Count every stored analysis into report_hour and report_word, and every closed case into
    case_timing, afresh (migration 0007, bench/scale.py)."""
    connection.execute(sa.delete(ReportHour))
    connection.execute(sa.text(_rollup_sql(connection.dialect.name, "true")))
    connection.execute(sa.delete(ReportWord))
    negative = _negative_words(sa.true()).execution_options(yield_per=5000)
    _add_words(connection, Counter(_word_days(connection.execute(negative))))
    connection.execute(sa.delete(CaseTiming))
    connection.execute(sa.text(_timing_sql(connection.dialect.name, "true")))


def _negative_words(which: Any) -> Any:
    """When posted, language and text of the negative mentions among `which`."""
    return (
        select(_posted(), Analysis.language, Mention.text)
        .join(Analysis, col(Analysis.mention_id) == col(Mention.id))
        .where(which, Analysis.sentiment == "negative")
    )


def _word_days(rows: Any) -> Iterator[tuple[date, str]]:
    """(day posted, word) of each topic word of each mention (report_word's key)."""
    for posted, language, text in rows:
        for word in topic_words(language, text):
            if len(word) <= WORD_LENGTH:
                yield _aware(posted).date(), word


def _add_words(connection: sa.Connection, counts: Mapping[tuple[date, str], int]) -> None:
    rows = [{"day": day, "word": word, "n": n} for (day, word), n in counts.items()]
    table = ReportWord.__table__
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    for start in range(0, len(rows), 1000):
        statement = insert(table).values(rows[start : start + 1000])
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=["day", "word"], set_={"n": table.c.n + statement.excluded.n}
            )
        )


def word_counts(
    session: Session, *, since: date, until: date, at_least: int
) -> list[tuple[str, int]]:
    """(word, negative mentions) of the days in [since, until), of the words in at least
    `at_least` of them."""
    total = sa.func.sum(ReportWord.n)
    statement = (
        select(ReportWord.word, total)
        .where(col(ReportWord.day) >= since, col(ReportWord.day) < until)
        .group_by(ReportWord.word)
        .having(total >= at_least)
    )
    return [(word, int(n)) for word, n in session.execute(statement)]


@dataclass(frozen=True, slots=True)
class Tally:
    """Counts of analysed mentions (category '') and complaints (a category) per key, with the
    earliest (posted, id) counted under each key: rankings break ties by what came first."""

    key: tuple[Any, ...]
    n: int
    first_at: datetime
    first_id: int


def rollup_tallies(
    session: Session,
    *,
    since: datetime,
    until: datetime,
    by: Sequence[str],
    category: str | None = None,
) -> list[Tally]:
    """The rollup counts of the whole hours in [since, until) summed by the report_hour
    columns named in `by` (e.g. ("source", "category")); of one category only, when given."""
    keys = [getattr(ReportHour, name) for name in by]
    statement = (
        select(
            *keys,
            sa.func.sum(ReportHour.n),
            sa.func.min(ReportHour.first_at),
            sa.func.min(ReportHour.first_id),
        )
        .where(col(ReportHour.hour) >= since, col(ReportHour.hour) < until)
        .group_by(*keys)
    )
    if category is not None:
        statement = statement.where(ReportHour.category == category)
    found = []
    for *key, n, first_at, first_id in session.exec(statement).all():
        found.append(Tally(tuple(key), int(n), _aware(first_at), int(first_id)))
    return found


def _aware(value: datetime) -> datetime:
    return cast(datetime, as_utc(value))


@dataclass(frozen=True, slots=True)
class Counted:
    """An analysed mention as the report's counts see it: no text, no payload."""

    mention_id: int
    posted: datetime
    source: str
    language: str
    sentiment: str
    kind: str
    intents: tuple[str, ...]


def counted_between(session: Session, *, since: datetime, until: datetime) -> list[Counted]:
    """The analysed mentions posted in [since, until), oldest first, as the rollups count them
    (the report reads the hours it covers only in part this way)."""
    statement = (
        select(
            col(Mention.id),
            _posted(),
            Mention.source,
            Analysis.language,
            Analysis.sentiment,
            Analysis.kind,
            Analysis.intents,
        )
        .join(Analysis, col(Analysis.mention_id) == col(Mention.id))
        .where(_posted_between(since, until))
        .order_by(_posted(), col(Mention.id))
    )
    return [
        Counted(mid, posted, source, language, sentiment, kind, tuple(intents or ()))
        for mid, posted, source, language, sentiment, kind, intents in session.exec(statement)
    ]


def _timing_sql(dialect: str, where: str) -> str:
    """INSERT ... SELECT of the case_timing rows of the closed cases matching `where` (SQL on
    `care_case`), replacing what case_timing holds for them."""
    posted = "coalesce(mention.created_at, mention.fetched_at)"
    resolved = "coalesce(care_case.replied_at, care_case.dismissed_at)"
    if dialect == "sqlite":
        # Whole microseconds of UTCDateTime's text form, so the seconds are what Python's
        # timedelta.total_seconds() gives: microseconds / 10**6, rounded once.
        def micros(t: str) -> str:
            seconds = f"CAST(strftime('%s', {t}) AS INTEGER)"
            return f"({seconds} * 1000000 + CAST(substr({t}, 21, 6) AS INTEGER))"

        resolution = f"({micros(resolved)} - {micros(posted)}) / 1000000.0"
    elif dialect == "postgresql":
        resolution = f"CAST(extract(epoch FROM {resolved} - {posted}) AS double precision)"
    else:
        raise RuntimeError(f"unsupported database dialect {dialect!r}")
    sender = (
        "(SELECT min(outbound_reply.requested_by) FROM outbound_reply"
        " WHERE outbound_reply.mention_id = mention.id AND outbound_reply.status = 'sent')"
    )
    columns = "mention_id, posted_at, priority, first_response_seconds, resolution_seconds, agent"
    return f"""
        INSERT INTO case_timing (case_id, {columns})
        SELECT care_case.id, mention.id, {posted}, analysis.priority,
            care_case.first_response_seconds, {resolution},
            coalesce(nullif({sender}, ''),
                CASE WHEN care_case.replied_at IS NOT NULL THEN care_case.assignee END)
        FROM care_case
        JOIN mention ON mention.id = care_case.mention_id
        JOIN analysis ON analysis.mention_id = mention.id
        WHERE ({where}) AND (care_case.first_response_seconds IS NOT NULL
            OR care_case.replied_at IS NOT NULL OR care_case.dismissed_at IS NOT NULL)
        ON CONFLICT (case_id) DO UPDATE SET
            {", ".join(f"{name} = excluded.{name}" for name in columns.split(", "))}
    """


def record_case_timings(session: Session, *, case_ids: Sequence[int]) -> None:
    """Keep the care figures' row of these cases, in the transaction that closed them or sent
    their reply (flushed first): who answered, when, how fast."""
    session.flush()
    session.execute(
        sa.text(_timing_sql(session.get_bind().dialect.name, "care_case.id IN :ids")).bindparams(
            sa.bindparam("ids", list(case_ids), expanding=True)
        )
    )


@dataclass(frozen=True, slots=True)
class Timing:
    """What the care figures read of a case that was answered or closed."""

    priority: str
    first_response_seconds: float | None
    resolution_seconds: float | None
    agent: str | None


def case_timings(session: Session, *, since: datetime, until: datetime) -> list[Timing]:
    """The answered or closed cases of mentions posted in [since, until): priority, first
    response, time to resolution from the post, who answered; oldest first."""
    statement = (
        select(
            CaseTiming.priority,
            CaseTiming.first_response_seconds,
            CaseTiming.resolution_seconds,
            CaseTiming.agent,
        )
        .where(col(CaseTiming.posted_at) >= since, col(CaseTiming.posted_at) < until)
        .order_by(col(CaseTiming.posted_at), col(CaseTiming.mention_id))
    )
    return [Timing(*found) for found in session.execute(statement)]


def negative_texts(
    session: Session, *, since: datetime, until: datetime
) -> Iterator[tuple[int, str, str]]:
    """(mention id, language, text) of the negative mentions posted in [since, until), oldest
    first, streamed: the report's examples of its topics, and its partial days' topics."""
    statement = (
        select(col(Mention.id), Analysis.language, Mention.text)
        .join(Analysis, col(Analysis.mention_id) == col(Mention.id))
        .where(_posted_between(since, until), Analysis.sentiment == "negative")
        .order_by(_posted(), col(Mention.id))
    )
    yield from session.execute(statement.execution_options(yield_per=500))  # type: ignore[misc]


def hourly_volume(
    session: Session, *, since: datetime, until: datetime
) -> list[tuple[datetime, str, int, int, datetime]]:
    """(hour, source, mentions, negative mentions, earliest posted) per hour and source in the
    whole hours of [since, until), from the rollups."""
    negative = sa.case((ReportHour.sentiment == "negative", ReportHour.n), else_=0)
    statement = (
        select(
            ReportHour.hour,
            ReportHour.source,
            sa.func.sum(ReportHour.n),
            sa.func.sum(negative),
            sa.func.min(ReportHour.first_at),
        )
        .where(
            col(ReportHour.hour) >= since,
            col(ReportHour.hour) < until,
            ReportHour.category == "",
        )
        .group_by(ReportHour.hour, ReportHour.source)
    )
    return [
        (_aware(hour), source, int(n), int(neg), _aware(first))
        for hour, source, n, neg, first in session.exec(statement)
    ]

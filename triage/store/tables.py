"""The database tables: one SQLModel class per entity, all times timezone-aware UTC."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from triage.clock import as_utc, utcnow


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes; SQLite drops the zone, so results are read back as UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return as_utc(value)


def _time(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable, index=index)


def _json() -> Any:
    return Field(default=None, sa_type=sa.JSON, nullable=True)


class CaseStatus(StrEnum):
    NEW = "new"
    POSTED = "posted"
    CLAIMED = "claimed"
    REPLIED = "replied"
    DISMISSED = "dismissed"
    ESCALATED = "escalated"


class DismissReason(StrEnum):
    SPAM = "spam"
    NOT_ABOUT_US = "not_about_us"
    HANDLED_ELSEWHERE = "handled_elsewhere"
    NO_REPLY_NEEDED = "no_reply_needed"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ").capitalize()


OPEN_STATUSES = (CaseStatus.NEW, CaseStatus.POSTED, CaseStatus.CLAIMED, CaseStatus.ESCALATED)


def in_inline(column: Any, values: tuple[str, ...]) -> Any:
    """`column IN (...)` with the values written into the SQL, not bound: a partial index is used
    only by a query whose WHERE repeats the index's condition, and SQLite cannot see through a
    bound parameter (the indexes below, and the queries of queries.py that use them)."""
    return column.in_(
        sa.bindparam("values", list(values), expanding=True, literal_execute=True, unique=True)
    )


# Longer "words" (a run of letters with no space) are never counted as topics.
WORD_LENGTH = 100

# The conditions of the partial indexes (on both databases: each keeps a few recent rows).
_UNANALYZED = sa.not_(sa.column("analyzed", sa.Boolean))
_OPEN = sa.column("status", sa.String).in_(list(OPEN_STATUSES))
_RAW_KEPT = sa.column("raw", sa.JSON).is_not(None)
_SLA_WATCHED = sa.and_(_OPEN, sa.not_(sa.column("sla_breached", sa.Boolean)))
# When a mention was posted, or stored when its source gave no time: what reports count by.
_POSTED = sa.func.coalesce(sa.column("created_at"), sa.column("fetched_at"))


class Mention(SQLModel, table=True):
    """A post, comment or review about the brand, stored once per (source, external id)."""

    __table_args__ = (
        sa.UniqueConstraint("source", "external_id", name="uq_mention_source_id"),
        # Earlier messages of the same author (the repeat-contact signal of the score), counted
        # from the index alone (PostgreSQL needs the id in it to skip the table).
        sa.Index("ix_mention_author", "author_handle", "platform", "created_at", "id"),
        # The mentions waiting for analysis, from an index that holds only them.
        sa.Index(
            "ix_mention_unanalyzed", "id", sqlite_where=_UNANALYZED, postgresql_where=_UNANALYZED
        ),
        # Payloads still kept, by age: retention ([store] keep_raw_days) reads only those.
        sa.Index(
            "ix_mention_raw_kept", "fetched_at", sqlite_where=_RAW_KEPT, postgresql_where=_RAW_KEPT
        ),
        # The mentions of a report window or a spike hour, by when they were posted.
        sa.Index("ix_mention_posted", _POSTED, "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=64, index=True)
    external_id: str = Field(max_length=512)
    platform: str = Field(max_length=32)
    url: str | None = Field(default=None, sa_type=sa.Text)
    author_name: str | None = Field(default=None, max_length=256)
    author_handle: str | None = Field(default=None, max_length=256)
    author_reach: int | None = None
    title: str | None = Field(default=None, sa_type=sa.Text)
    text: str = Field(sa_type=sa.Text)
    created_at: datetime | None = _time(index=True)
    fetched_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    rating: float | None = None
    engagement: int | None = None
    thread_id: str | None = Field(default=None, max_length=512)
    parent_id: str | None = Field(default=None, max_length=512)
    raw: dict[str, Any] | None = _json()
    # Set in the transaction that stores its analysis (triage/pipeline.py).
    analyzed: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})


class Analysis(SQLModel, table=True):
    """What the models made of a mention: language, sentiment, urgency and the reasons."""

    id: int | None = Field(default=None, primary_key=True)
    mention_id: int = Field(foreign_key="mention.id", unique=True, ondelete="CASCADE")
    language: str = Field(max_length=8)
    language_confidence: float = 0.0
    sentiment: str = Field(max_length=16)
    p_negative: float
    p_neutral: float
    p_positive: float
    complaint_probability: float
    kind: str = Field(max_length=16, description="complaint | question | feedback | praise | info")
    intents: list[str] | None = _json()
    urgency: int = Field(index=True)
    priority: str = Field(max_length=2, index=True)
    escalate: bool = False
    reasons: list[str] | None = _json()
    model_version: str = Field(max_length=128)
    analyzed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class ReportHour(SQLModel, table=True):
    """Analysed mentions counted per hour they were posted (UTC), source, language and
    sentiment: `category` '' counts mentions, a complaint category counts complaints.

    Kept with each analysis (queries.count_analysed), never lowered: it keeps the history the
    reports and spike checks read after payloads or mentions are pruned.
    """

    __tablename__ = "report_hour"

    hour: datetime = Field(sa_type=UTCDateTime, primary_key=True)
    source: str = Field(max_length=64, primary_key=True)
    language: str = Field(max_length=8, primary_key=True)
    sentiment: str = Field(max_length=16, primary_key=True)
    category: str = Field(default="", max_length=32, primary_key=True)
    n: int = 0
    # The earliest mention counted here: when it was posted, and the lowest id (ties in the
    # report's rankings go to what came first, as when every row was read).
    first_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    first_id: int


class ReportWord(SQLModel, table=True):
    """How many negative mentions posted on a day (UTC) have a word among their topic words
    (triage/words.py); kept with each analysis, like report_hour."""

    __tablename__ = "report_word"

    day: date = Field(primary_key=True)
    word: str = Field(max_length=WORD_LENGTH, primary_key=True)
    n: int = 0


class CaseTiming(SQLModel, table=True):
    """What the report's care figures read of an answered or closed case, on one narrow row:
    kept by queries.record_case_timings wherever a case is closed or its reply sent, and, like
    report_hour, kept when mentions are pruned."""

    __tablename__ = "case_timing"
    __table_args__ = (sa.Index("ix_case_timing_posted", "posted_at", "mention_id"),)

    case_id: int = Field(primary_key=True)
    mention_id: int
    posted_at: datetime = Field(sa_type=UTCDateTime, nullable=False)  # the mention's
    priority: str = Field(max_length=2)
    first_response_seconds: float | None = None
    resolution_seconds: float | None = None  # from the post to the reply, else the dismissal
    # who answered: the first sender of a reply in name order, else the assignee of a case
    # marked replied
    agent: str | None = Field(default=None, max_length=128)


class Draft(SQLModel, table=True):
    """A reply proposed to the agent; never sent without a human's approval."""

    id: int | None = Field(default=None, primary_key=True)
    mention_id: int = Field(foreign_key="mention.id", unique=True, ondelete="CASCADE")
    language: str = Field(max_length=8)
    text: str = Field(sa_type=sa.Text)
    generator: str = Field(max_length=64, description="template:<kind>:<lang> or a model id")
    note: str | None = Field(default=None, sa_type=sa.Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class Case(SQLModel, table=True):
    """A mention that needs a human, and where it is on new -> posted -> claimed -> done."""

    __tablename__ = "care_case"
    # Open cases (the queue, the SLA check, drafting) from an index that holds only them.
    __table_args__ = (
        sa.Index("ix_care_case_open", "id", sqlite_where=_OPEN, postgresql_where=_OPEN),
        # Open cases the SLA check still watches: a case leaves it with its breach ping.
        sa.Index(
            "ix_care_case_sla_watched",
            "id",
            sqlite_where=_SLA_WATCHED,
            postgresql_where=_SLA_WATCHED,
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    mention_id: int = Field(foreign_key="mention.id", unique=True, ondelete="CASCADE")
    status: str = Field(default=CaseStatus.NEW, max_length=16, index=True)
    assignee: str | None = Field(default=None, max_length=64)
    dismiss_reason: str | None = Field(default=None, max_length=64)
    reply_text: str | None = Field(default=None, sa_type=sa.Text)
    reply_url: str | None = Field(default=None, sa_type=sa.Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    posted_at: datetime | None = _time()
    claimed_at: datetime | None = _time()
    replied_at: datetime | None = _time()
    dismissed_at: datetime | None = _time()
    escalated_at: datetime | None = _time()
    first_response_seconds: float | None = None
    # Where its card is in Slack, once posted (for chat.update).
    slack_channel: str | None = Field(default=None, max_length=32)
    slack_ts: str | None = Field(default=None, max_length=32)
    # Its SLA breach ping is queued: the SLA check has nothing more to say about it.
    sla_breached: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})


class ReplyStatus(StrEnum):
    NEW = "new"  # recorded, not tried yet
    SENDING = "sending"  # an attempt holds the lease
    UNKNOWN = "unknown"  # an attempt ended without a clear answer: it may have gone out
    SENT = "sent"
    FAILED = "failed"  # the platform surely did not post it; may be tried again


class OutboundReply(SQLModel, table=True):
    """A reply on its way to a platform, kept under an idempotency key so it goes out once."""

    __tablename__ = "outbound_reply"
    # The latest replies sent, newest first: new drafts learn from them (triage/drafts/learn).
    __table_args__ = (
        sa.Index("ix_outbound_reply_sent", "status", "sent_at"),
        # Who sent the reply to a mention, from the index alone: the care figures' rows
        # (case_timing) and the report's rows ask it of every answered case.
        sa.Index("ix_outbound_reply_sender", "mention_id", "status", "requested_by"),
    )

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=128, unique=True)
    mention_id: int = Field(foreign_key="mention.id", index=True, ondelete="CASCADE")
    case_id: int | None = Field(default=None, foreign_key="care_case.id", ondelete="SET NULL")
    source: str = Field(max_length=64)
    text: str = Field(sa_type=sa.Text)
    status: str = Field(default=ReplyStatus.NEW, max_length=16, index=True)
    attempts: int = 0
    requested_by: str = Field(max_length=128)
    external_id: str | None = Field(default=None, max_length=512)
    url: str | None = Field(default=None, sa_type=sa.Text)
    error: str | None = Field(default=None, sa_type=sa.Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    attempt_at: datetime | None = _time()
    sent_at: datetime | None = _time()


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"  # a worker is sending it, or crashed while it did
    SENT = "sent"
    FAILED = "failed"  # Slack refused it for good (bad channel, bad blocks)
    DIGESTED = "digested"  # a card held back in a digest; posted in its thread on request
    STACKED = "stacked"  # a card that goes out, and is updated, inside a stack message


class SlackMessage(SQLModel, table=True):
    """A Slack write waiting to happen, under a key: a restart never loses or repeats it."""

    __tablename__ = "slack_outbox"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=128, unique=True)
    method: str = Field(max_length=32, description="chat.postMessage, chat.update, ...")
    channel: str = Field(max_length=32)
    case_id: int | None = Field(
        default=None, foreign_key="care_case.id", ondelete="SET NULL", index=True
    )
    # Lower goes first: cards are sent worst first.
    rank: int = Field(default=0, index=True)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    status: str = Field(default=OutboxStatus.PENDING, max_length=16, index=True)
    # The key of the digest or stack message that holds this card (see triage/notify.py).
    digest: str | None = Field(default=None, max_length=128, index=True)
    attempts: int = 0
    ts: str | None = Field(default=None, max_length=32)
    error: str | None = Field(default=None, sa_type=sa.Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    attempt_at: datetime | None = _time()
    sent_at: datetime | None = _time()


class ConnectorState(SQLModel, table=True):
    """A connector's cursor and health, kept apart from the mentions it covers."""

    __tablename__ = "connector_state"

    name: str = Field(primary_key=True, max_length=64)
    cursor: str | None = Field(default=None, sa_type=sa.Text)
    last_run_at: datetime | None = _time()
    last_success_at: datetime | None = _time()
    last_error: str | None = Field(default=None, sa_type=sa.Text)
    last_error_at: datetime | None = _time()
    consecutive_failures: int = 0
    paused: bool = False
    # Mentions stored from this source: kept by save_batch, so `connectors list` counts nothing.
    mention_count: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class AuditEvent(SQLModel, table=True):
    """Who did what to which case, when, with the text before and after."""

    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=True)
    actor: str = Field(max_length=128)
    # The report and spike checks look for their own earlier events by action.
    action: str = Field(max_length=32, index=True)
    case_id: int | None = Field(default=None, foreign_key="care_case.id", index=True)
    before: str | None = Field(default=None, sa_type=sa.Text)
    after: str | None = Field(default=None, sa_type=sa.Text)
    detail: dict[str, Any] | None = _json()

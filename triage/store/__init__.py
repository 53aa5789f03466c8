"""The store: tables, engine and sessions, migrations, and small keyword-only queries."""

from triage.store.engine import make_engine, session_scope, upgrade
from triage.store.tables import (
    OPEN_STATUSES,
    Analysis,
    AuditEvent,
    Case,
    CaseStatus,
    ConnectorState,
    DismissReason,
    Draft,
    Mention,
    OutboundReply,
    OutboxStatus,
    ReplyStatus,
    SlackMessage,
)

__all__ = [
    "OPEN_STATUSES",
    "Analysis",
    "AuditEvent",
    "Case",
    "CaseStatus",
    "ConnectorState",
    "DismissReason",
    "Draft",
    "Mention",
    "OutboundReply",
    "OutboxStatus",
    "ReplyStatus",
    "SlackMessage",
    "make_engine",
    "session_scope",
    "upgrade",
]

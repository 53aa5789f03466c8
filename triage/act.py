"""The act stage: an agent's approved reply goes out once, or a case is marked replied by hand.

Sending is a small state machine on the outbound_reply row of the reply's idempotency key:

    new/failed --claim--> sending --platform says yes--> sent
                                  --surely refused----> failed   (safe to try again)
                                  --no clear answer---> unknown  (may have gone out)

Claiming is one conditional UPDATE, so of two agents approving at once exactly one sends; the
other is told who is sending or who sent it. A claim older than LEASE (a crash mid-send) counts
as unknown. Before an unknown attempt is repeated, the connector is asked whether the reply is
already on the platform (`find_reply`), unless its replies are idempotent by themselves; with
neither, the agent must look and decide (`force`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, select

from connectors.base import Connector
from connectors.reply import ReplyNotAllowed, SentReply
from triage.clock import utcnow
from triage.domain import ReplyTarget
from triage.drafts.check import check_draft, errors, summary
from triage.http import ConnectorError
from triage.store import (
    OPEN_STATUSES,
    AuditEvent,
    Case,
    CaseStatus,
    DismissReason,
    Draft,
    Mention,
    OutboundReply,
    ReplyStatus,
    session_scope,
)
from triage.store.queries import audit, record_case_timings

log = logging.getLogger(__name__)

# Audit actions that close a case, for saying who handled it.
CLOSING_ACTIONS = ("reply_sent", "reply_found", "mark_replied", "dismiss")
# How long a send attempt may hold its claim before it is presumed crashed.
LEASE = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class ReplyResult:
    """A reply that is on the platform: sent now, or found already sent."""

    mention_id: int
    text: str
    sent_by: str
    sent_at: datetime | None
    external_id: str | None
    url: str | None
    # False when this call posted it; True when an earlier call (or agent) already had.
    already_sent: bool


class ReplyRefused(Exception):
    """Nothing was sent, and the message says why and what the agent can do."""


class ReplyInProgress(ReplyRefused):
    """Another agent (or an earlier attempt) is sending this reply right now."""


class CaseClosed(ReplyRefused):
    """The case was replied to or dismissed already (by someone else, usually)."""

    def __init__(self, case_id: int, status: str):
        super().__init__(f"case {case_id} is already {status}")
        self.case_id = case_id
        self.status = status


class ReplyOutcomeUnknown(ReplyRefused):
    """An earlier attempt may have posted; retrying blindly could post twice."""


def reply_key(mention_id: int) -> str:
    """The default idempotency key: the first reply to a mention."""
    return f"mention-{mention_id}"


def reply_target(mention: Mention) -> ReplyTarget:
    """What a connector needs from a stored mention to answer it."""
    return ReplyTarget(
        external_id=mention.external_id,
        platform=mention.platform,
        url=mention.url,
        author_handle=mention.author_handle,
        thread_id=mention.thread_id,
        parent_id=mention.parent_id,
        raw=dict(mention.raw or {}),
    )


class Replies:
    """Sends approved replies through the mention's connector, each at most once."""

    def __init__(self, engine: sa.Engine, connector_for: Callable[[str], Connector]):
        self.engine = engine
        self._connector_for = connector_for

    def send(
        self,
        mention_id: int,
        text: str,
        *,
        actor: str,
        key: str | None = None,
        force: bool = False,
    ) -> ReplyResult:
        """Post `text` as the reply to a mention; a repeat of the same key never posts twice.

        Raises ReplyRefused (nothing sent), or the connector's error after recording it.
        `force` retries an attempt whose outcome is unknown without asking the platform.
        """
        blocking = errors(check_draft(text, language="und", kind="reply"))
        if blocking:
            raise ReplyRefused(f"the reply has an {summary(blocking)}; edit it first")
        key = key or reply_key(mention_id)
        reply_id, source, target, previous = self._claim(mention_id, text, actor=actor, key=key)
        if isinstance(previous, ReplyResult):
            return previous
        with self._connector_for(source) as connector:
            if previous == ReplyStatus.UNKNOWN and not force:
                found = self._look_for_earlier(connector, target, key, reply_id, text)
                if found is not None:
                    return self._record_sent(reply_id, found, actor=actor, already=True)
            try:
                sent = connector.reply(target, text, key=key)
            except ConnectorError as exc:
                self._record_failure(reply_id, exc, actor=actor)
                raise
            except Exception as exc:
                # A bug after the request may hide a reply that went out: never "failed".
                self._record_failure(
                    reply_id, ConnectorError(str(exc), uncertain=True), actor=actor
                )
                raise
        return self._record_sent(reply_id, sent, actor=actor, already=sent.already_there)

    def mark_replied(
        self, mention_id: int, *, actor: str, url: str | None = None, text: str | None = None
    ) -> Case:
        """Close a case answered outside triage (sources without a reply API)."""
        now = utcnow()
        with session_scope(self.engine) as session:
            mention = session.get(Mention, mention_id)
            if mention is None:
                raise ReplyRefused(f"there is no mention {mention_id}")
            case = _case_of(session, mention_id)
            if case is None:
                case = Case(mention_id=mention_id)
            if case.status == CaseStatus.REPLIED:
                raise ReplyRefused(
                    f"mention {mention_id} was already marked replied"
                    + (f" at {case.replied_at:%Y-%m-%d %H:%M} UTC" if case.replied_at else "")
                )
            _close_case(case, mention, text=text, url=url, at=now)
            session.add(case)
            session.flush()
            record_case_timings(session, case_ids=[case.id])
            audit(
                session,
                actor=actor,
                action="mark_replied",
                case_id=case.id,
                after=text,
                detail={"url": url} if url else None,
            )
            session.refresh(case)
            session.expunge(case)
            return case

    def _claim(
        self, mention_id: int, text: str, *, actor: str, key: str
    ) -> tuple[int, str, ReplyTarget, ReplyStatus | ReplyResult | None]:
        """Take the send lease on the key's row; the status it had, or the reply already sent."""
        now = utcnow()
        with session_scope(self.engine) as session:
            mention = session.get(Mention, mention_id)
            if mention is None:
                raise ReplyRefused(f"there is no mention {mention_id}")
            row = session.exec(
                select(OutboundReply).where(OutboundReply.idempotency_key == key)
            ).first()
            if row is None:
                case = _case_of(session, mention_id)
                row = OutboundReply(
                    idempotency_key=key,
                    mention_id=mention_id,
                    case_id=case.id if case else None,
                    source=mention.source,
                    text=text,
                    requested_by=actor,
                )
                session.add(row)
                try:
                    session.flush()
                except sa.exc.IntegrityError:
                    session.rollback()  # another agent created it a moment ago
                    row = session.exec(
                        select(OutboundReply).where(OutboundReply.idempotency_key == key)
                    ).one()
            if row.mention_id != mention_id:
                raise ReplyRefused(f"key {key!r} belongs to mention {row.mention_id}")
            if row.status == ReplyStatus.SENT:
                return row.id or 0, row.source, reply_target(mention), _result(row, already=True)
            case = _case_of(session, mention_id)
            if case is not None and case.status not in OPEN_STATUSES:
                raise CaseClosed(case.id or 0, str(case.status))
            stale = row.attempt_at is not None and row.attempt_at < now - LEASE
            if row.status == ReplyStatus.SENDING and not stale:
                raise ReplyInProgress(
                    f"{row.requested_by} is sending a reply to this mention right now"
                )
            previous = ReplyStatus.UNKNOWN if row.status == ReplyStatus.SENDING else row.status
            claimed = session.execute(
                sa.update(OutboundReply)
                .where(
                    col(OutboundReply.id) == row.id,
                    col(OutboundReply.status) == row.status,
                    col(OutboundReply.attempts) == row.attempts,
                )
                .values(
                    status=ReplyStatus.SENDING,
                    attempts=row.attempts + 1,
                    attempt_at=now,
                    requested_by=actor,
                    text=text,
                    error=None,
                )
            )
            if claimed.rowcount != 1:
                session.rollback()
                raise ReplyInProgress("another agent started sending this reply a moment ago")
            return row.id or 0, row.source, reply_target(mention), ReplyStatus(previous)

    def _look_for_earlier(
        self, connector: Connector, target: ReplyTarget, key: str, reply_id: int, text: str
    ) -> SentReply | None:
        if type(connector).find_reply is not Connector.find_reply:
            try:
                return connector.find_reply(target, key, text=text)
            except ConnectorError as exc:
                # Not knowing is no licence to post again: the attempt stays unknown.
                self._mark_unknown(reply_id, f"look-up failed: {type(exc).__name__}: {exc}")
                raise ReplyOutcomeUnknown(
                    f"an earlier attempt to reply on {connector.platform} may have gone out and "
                    f"{connector.platform} could not be asked ({exc}): try again later, or look "
                    f"at {target.url or 'the post'}, then mark the case replied or send again "
                    "with force"
                ) from exc
        if connector.reply_is_idempotent:
            return None
        self._mark_unknown(reply_id, None)
        raise ReplyOutcomeUnknown(
            f"an earlier attempt to reply on {connector.platform} may have gone out and "
            f"{connector.platform} cannot be asked: look at {target.url or 'the post'}, then "
            "mark the case replied or send again with force"
        )

    def _mark_unknown(self, reply_id: int, error: str | None) -> None:
        with session_scope(self.engine) as session:
            row = session.get(OutboundReply, reply_id)
            if row is not None:
                row.status = ReplyStatus.UNKNOWN
                if error:
                    row.error = error[:2000]
                session.add(row)

    def _record_sent(
        self, reply_id: int, sent: SentReply, *, actor: str, already: bool
    ) -> ReplyResult:
        now = utcnow()
        with session_scope(self.engine) as session:
            row = session.get(OutboundReply, reply_id)
            mention = session.get(Mention, row.mention_id) if row else None
            if row is None or mention is None:
                raise ReplyRefused(f"reply {reply_id} vanished while it was being sent")
            row.status = ReplyStatus.SENT
            row.external_id = sent.external_id
            row.url = sent.url
            row.sent_at = now
            row.error = None
            session.add(row)
            case = _case_of(session, row.mention_id)
            if case is not None and case.status in OPEN_STATUSES:
                _close_case(case, mention, text=row.text, url=sent.url, at=now)
                session.add(case)
            if case is not None:
                # Closed now, or closed before and answered now: who answered may change.
                record_case_timings(session, case_ids=[case.id])
            audit(
                session,
                actor=actor,
                action="reply_found" if already else "reply_sent",
                case_id=case.id if case else None,
                after=row.text,
                detail={"key": row.idempotency_key, "external_id": sent.external_id},
            )
            result = _result(row, already=already)
        log.info("reply %s to mention %s is on %s", reply_id, result.mention_id, result.url)
        return result

    def _record_failure(self, reply_id: int, exc: ConnectorError, *, actor: str) -> None:
        unknown = exc.uncertain
        with session_scope(self.engine) as session:
            row = session.get(OutboundReply, reply_id)
            if row is None:
                return
            row.status = ReplyStatus.UNKNOWN if unknown else ReplyStatus.FAILED
            row.error = f"{type(exc).__name__}: {exc}"[:2000]
            session.add(row)
            audit(
                session,
                actor=actor,
                action="reply_unknown" if unknown else "reply_failed",
                case_id=row.case_id,
                after=row.text,
                detail={"key": row.idempotency_key, "error": row.error},
            )
        level = logging.INFO if isinstance(exc, ReplyNotAllowed) else logging.WARNING
        log.log(
            level, "reply %s %s: %s", reply_id, "may have gone out" if unknown else "failed", exc
        )


class CaseActions:
    """Assign, escalate, dismiss and edit the draft of a case; each audited."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def assign(self, case_id: int, *, actor: str, assignee: str | None = None) -> Case:
        """Give the case to `assignee` (default: the actor); it shows as claimed."""
        who = assignee or actor
        with session_scope(self.engine) as session:
            case = _open_case(session, case_id)
            before = case.assignee
            case.assignee = who
            if case.status in (CaseStatus.NEW, CaseStatus.POSTED):
                case.status = CaseStatus.CLAIMED
            case.claimed_at = case.claimed_at or utcnow()
            session.add(case)
            audit(session, actor=actor, action="assign", case_id=case_id, before=before, after=who)
            return _detached(session, case)

    def escalate(self, case_id: int, *, actor: str, note: str | None = None) -> Case:
        """Hand the case to the leads; it stays open until someone replies or dismisses it."""
        with session_scope(self.engine) as session:
            case = _open_case(session, case_id)
            if case.status == CaseStatus.ESCALATED:
                raise ReplyRefused(f"case {case_id} is already escalated")
            case.status = CaseStatus.ESCALATED
            case.escalated_at = utcnow()
            session.add(case)
            audit(session, actor=actor, action="escalate", case_id=case_id, after=note)
            return _detached(session, case)

    def dismiss(self, case_id: int, *, actor: str, reason: DismissReason | str) -> Case:
        """Close the case without a reply, with the reason."""
        try:
            why = DismissReason(reason)
        except ValueError:
            known = ", ".join(item.value for item in DismissReason)
            raise ReplyRefused(f"{reason!r} is not a dismiss reason; expected {known}") from None
        with session_scope(self.engine) as session:
            case = _open_case(session, case_id)
            case.status = CaseStatus.DISMISSED
            case.dismiss_reason = why.value
            case.dismissed_at = utcnow()
            session.add(case)
            record_case_timings(session, case_ids=[case_id])
            audit(session, actor=actor, action="dismiss", case_id=case_id, after=why.value)
            return _detached(session, case)

    def edit_draft(self, case_id: int, text: str, *, actor: str) -> Draft:
        """Save an agent's edit of the draft (sending it is Replies.send)."""
        with session_scope(self.engine) as session:
            case = _open_case(session, case_id)
            draft = session.exec(select(Draft).where(Draft.mention_id == case.mention_id)).first()
            before = draft.text if draft else None
            if draft is None:
                draft = Draft(mention_id=case.mention_id, language="und", text=text, generator="")
            draft.text = text
            draft.generator = f"edited by {actor}"
            session.add(draft)
            audit(session, actor=actor, action="edit", case_id=case_id, before=before, after=text)
            session.flush()
            session.refresh(draft)
            session.expunge(draft)
            return draft


def handled_by(engine: sa.Engine, case_id: int) -> str:
    """Who closed a case and how, for telling a second agent ("replied by U123 at 10:42")."""
    with session_scope(engine) as session:
        case = session.get(Case, case_id)
        if case is None:
            return f"case {case_id} does not exist"
        closing = session.exec(
            select(AuditEvent)
            .where(
                AuditEvent.case_id == case_id,
                col(AuditEvent.action).in_(
                    ("reply_sent", "reply_found", "mark_replied", "dismiss")
                ),
            )
            .order_by(col(AuditEvent.id).desc())
        ).first()
        what = {CaseStatus.REPLIED: "replied", CaseStatus.DISMISSED: "dismissed"}.get(
            CaseStatus(case.status), str(case.status)
        )
        if closing is None:
            return f"this case is already {what}"
        return f"this case was already {what} by <@{closing.actor}> at {closing.at:%H:%M} UTC"


def _open_case(session: Session, case_id: int) -> Case:
    case = session.get(Case, case_id)
    if case is None:
        raise ReplyRefused(f"there is no case {case_id}")
    if case.status not in OPEN_STATUSES:
        raise CaseClosed(case_id, str(case.status))
    return case


def _detached(session: Session, case: Case) -> Case:
    session.flush()
    session.refresh(case)
    session.expunge(case)
    return case


def _case_of(session: Session, mention_id: int) -> Case | None:
    return session.exec(select(Case).where(Case.mention_id == mention_id)).first()


def _close_case(
    case: Case, mention: Mention, *, text: str | None, url: str | None, at: datetime
) -> None:
    case.status = CaseStatus.REPLIED
    case.reply_text = text
    case.reply_url = url
    case.replied_at = at
    since = mention.created_at or case.created_at
    if since is not None and case.first_response_seconds is None:
        case.first_response_seconds = max(0.0, (at - since).total_seconds())


def _result(row: OutboundReply, *, already: bool) -> ReplyResult:
    return ReplyResult(
        mention_id=row.mention_id,
        text=row.text,
        sent_by=row.requested_by,
        sent_at=row.sent_at,
        external_id=row.external_id,
        url=row.url,
        already_sent=already,
    )

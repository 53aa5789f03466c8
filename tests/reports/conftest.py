"""A known set of mentions and cases in the store, and a fake Slack for posting reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from triage.store import Analysis, Case, CaseStatus, Mention, OutboundReply, session_scope
from triage.store.queries import count_analysed, record_case_timings
from triage.store.tables import ReplyStatus

DAY1 = datetime(2026, 11, 10, tzinfo=UTC)
PROBABILITIES = {
    "negative": (0.9, 0.05, 0.05), "neutral": (0.1, 0.8, 0.1), "positive": (0.05, 0.05, 0.9)
}  # fmt: skip
SINCE, UNTIL = DAY1, DAY1 + timedelta(days=2)


def _add(engine, n, at, *, source="x", lang="en", sentiment="negative", kind="complaint",
         intents=("billing",), priority="P3", reply_after=None, agent=None, dismiss_after=None,
         text="a mention", stored_only=False):  # fmt: skip
    """One analysed mention with its case, posted at `at` (stored_only: the source gave no
    time, triage stored it at `at`)."""
    with session_scope(engine) as session:
        mention = Mention(
            source=source, external_id=f"m{n}", platform=source, text=text,
            created_at=None if stored_only else at, author_handle=f"@u{n}",
            url=f"https://example.com/{n}",
        )  # fmt: skip
        if stored_only:
            mention.fetched_at = at
        session.add(mention)
        session.flush()
        p = {
            "negative": (0.9, 0.05, 0.05),
            "neutral": (0.1, 0.8, 0.1),
            "positive": (0.05, 0.05, 0.9),
        }
        neg, neu, pos = p[sentiment]
        session.add(
            Analysis(
                mention_id=mention.id, language=lang, sentiment=sentiment, p_negative=neg,
                p_neutral=neu, p_positive=pos,
                complaint_probability=0.8 if kind == "complaint" else 0.1,
                kind=kind, intents=list(intents), urgency=50, priority=priority, reasons=[],
                model_version="test",
            )
        )  # fmt: skip
        session.flush()
        count_analysed(session, mention_ids=[mention.id])  # as the pipeline stores analyses
        case = Case(mention_id=mention.id, status=CaseStatus.POSTED)
        if reply_after is not None:
            case.status, case.replied_at = CaseStatus.REPLIED, at + timedelta(seconds=reply_after)
            case.first_response_seconds = float(reply_after)
            session.add(
                OutboundReply(
                    idempotency_key=f"k{n}", mention_id=mention.id, source=source, text="hi",
                    status=ReplyStatus.SENT, requested_by=agent, sent_at=case.replied_at,
                )
            )  # fmt: skip
        if dismiss_after is not None:
            case.status = CaseStatus.DISMISSED
            case.dismissed_at = at + timedelta(seconds=dismiss_after)
        session.add(case)
        session.flush()
        record_case_timings(session, case_ids=[case.id])  # as act.py closes cases


@pytest.fixture
def known(engine):
    h = timedelta(hours=1)
    _add(
        engine,
        1,
        DAY1 + 8 * h,
        intents=("billing", "refund"),
        priority="P2",
        reply_after=1800,
        agent="U1",
        text="You charged me twice for my bill @kestrel",
    )
    _add(
        engine,
        2,
        DAY1 + 9 * h,
        lang="pl",
        intents=("delivery",),
        reply_after=36000,
        agent="U2",
        text="Paczka nie dotarła, zamówienie zaginęło",
    )
    _add(
        engine,
        3,
        DAY1 + 12 * h,
        source="reddit",
        sentiment="positive",
        kind="praise",
        intents=("praise",),
        priority="P4",
        text="Love it",
    )
    _add(
        engine,
        4,
        DAY1 + 34 * h,
        source="reddit",
        lang="de",
        sentiment="neutral",
        kind="question",
        intents=("question",),
        dismiss_after=3600,
        text="Wann öffnet ihr?",
    )
    _add(
        engine,
        5,
        DAY1 + 35 * h,
        priority="P1",
        reply_after=1200,
        agent="U1",
        text="Charged twice AGAIN! <script>alert(1)</script>",
    )
    # The period before: one positive, one negative; after the window: not counted.
    _add(engine, 6, DAY1 - 20 * h, sentiment="positive", kind="praise", intents=("praise",))
    _add(engine, 7, DAY1 - 10 * h)
    _add(engine, 8, UNTIL, text="exactly at the end: the next period")
    return engine

"""The fake Slack server and a store with cases ready to notify."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tests.slack.fake_slack import FakeSlack, start_fake_slack
from triage.store import Analysis, Case, Draft, Mention, session_scope

CARE = "C0CARE0001"
ESCALATION = "C0ESCAL001"


@pytest.fixture
def slack() -> Iterator[tuple[FakeSlack, str]]:
    server, url = start_fake_slack()
    yield server.state, url
    server.shutdown()
    server.server_close()


def add_case(
    engine,
    *,
    external_id: str,
    text: str,
    priority: str = "P3",
    urgency: int = 40,
    source: str = "imports",
    platform: str = "file",
    escalate: bool = False,
    draft: str | None = "Hi, sorry about that.",
) -> int:
    """Store a mention with its analysis, draft and a new case; return the case id."""
    with session_scope(engine) as session:
        mention = Mention(
            source=source,
            external_id=external_id,
            platform=platform,
            text=text,
            url=f"https://example.com/{external_id}",
            author_name="Ana",
            author_handle="@ana",
            author_reach=12_400,
            created_at=datetime(2026, 11, 24, 9, 0, tzinfo=UTC),
        )
        session.add(mention)
        session.flush()
        session.add(
            Analysis(
                mention_id=mention.id,
                language="en",
                sentiment="negative",
                p_negative=0.9,
                p_neutral=0.08,
                p_positive=0.02,
                complaint_probability=0.8,
                kind="complaint",
                intents=["billing"],
                urgency=urgency,
                priority=priority,
                escalate=escalate,
                reasons=["negative tone (90%)", "mentions a billing problem"],
                model_version="test",
            )
        )
        if draft is not None:
            session.add(
                Draft(mention_id=mention.id, language="en", text=draft, generator="template")
            )
        case = Case(mention_id=mention.id)
        session.add(case)
        session.flush()
        return case.id

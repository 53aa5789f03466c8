"""The fake Slack server and a store with cases ready to notify."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import ClassVar

import pytest

from connectors.base import Connector, Page
from connectors.reply import ReplyRules, SentReply
from triage.config import ConnectorSettings, DatabaseSettings, Settings, SlackSettings
from triage.domain import ReplyTarget
from triage.slack.bot import SlackBot
from triage.slack.client import make_slack_client
from triage.store import Analysis, Case, Draft, Mention, session_scope

CARE = "C0CARE0001"
CREATED_AT = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
ESCALATION = "C0ESCAL001"


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
    language: str = "en",
    intents: tuple[str, ...] = ("billing",),
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
            created_at=CREATED_AT,
        )
        session.add(mention)
        session.flush()
        session.add(
            Analysis(
                mention_id=mention.id,
                language=language,
                sentiment="negative",
                p_negative=0.9,
                p_neutral=0.08,
                p_positive=0.02,
                complaint_probability=0.8,
                kind="complaint",
                intents=list(intents),
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


API = "https://chat.example/api/replies"
SENDER, OTHER, ADMIN = "U0SENDER01", "U0OTHER001", "U0ADMIN001"
AGENTS = "S0AGENTS01"


class ChatConnector(Connector):
    """A platform that takes replies by POST and allows 40 characters."""

    type = "chat"
    platform = "chat"
    uses_queries = False
    reply_rules: ClassVar[ReplyRules | None] = ReplyRules(max_length=40)

    def pages(self, cursor: str | None) -> Iterator[Page]:
        return iter(())  # these tests only reply

    def post_reply(self, target: ReplyTarget, text: str, *, key: str) -> SentReply:
        request = self.client.build_request(
            "POST", API, json={"in_reply_to": target.external_id, "text": text}
        )
        body = self.send_once(request).json()
        return SentReply(external_id=body["id"], url=f"https://chat.example/p/{body['id']}")


@pytest.fixture
def bot(engine, slack):
    state, url = slack
    state.groups[AGENTS] = [OTHER]
    settings = Settings(
        database=DatabaseSettings(url=str(engine.url)),
        slack=SlackSettings(
            bot_token="xoxb-test",
            care_channel=CARE,
            escalation_channel=ESCALATION,
            leads_group="S0LEADS001",
            senders=[SENDER, AGENTS],
            admins=[ADMIN],
            post_interval=0.01,
            api_url=url,
        ),
        connectors=[ConnectorSettings(name="chat-main", type="chat")],
    )

    def connector_for(source: str) -> Connector:
        return ChatConnector(settings.connector(source), sleep=lambda _s: None)

    return SlackBot(
        settings, engine, make_slack_client(settings.slack), connector_for=connector_for
    )


@pytest.fixture
def case_id(engine, bot) -> int:
    case_id = add_case(
        engine,
        external_id="m1",
        text="You charged me twice!",
        priority="P2",
        urgency=70,
        source="chat-main",
        platform="chat",
        draft="Sorry Ana, we will fix it.",
    )
    bot.notifier.enqueue_cards()
    bot.notifier.flush()
    return case_id

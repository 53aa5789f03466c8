"""One mention all the way: an X poll -> analysis -> a Slack card -> Approve -> the reply on X ->
the card updated in place. Real models, real database, real HTTP to the fake Slack server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import respx
from sqlmodel import select

from connectors.registry import build_connector
from tests.slack.conftest import CARE, SENDER
from triage.config import Settings
from triage.pipeline import Pipeline
from triage.slack.bot import SlackBot
from triage.slack.cards import APPROVE
from triage.slack.client import make_slack_client
from triage.store import Case, CaseStatus, Mention, OutboundReply, session_scope

pytestmark = pytest.mark.model

FIXTURES = Path(__file__).parent.parent / "fixtures" / "x"
SEARCH = "https://api.x.com/2/tweets/search/recent"
TWEETS = "https://api.x.com/2/tweets"
OUTAGE_POST = "2124778690706030369"


def _fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@respx.mock
def test_a_polled_post_is_carded_approved_replied_and_the_card_updated(engine, slack, analyzer):
    state, url = slack
    settings = Settings.model_validate(
        {
            "database": {"url": str(engine.url)},
            "slack": {
                "bot_token": "xoxb-test",
                "care_channel": CARE,
                "senders": [SENDER],
                "post_interval": 0.01,
                "api_url": url,
            },
            "connectors": [
                {
                    "name": "x-brand",
                    "type": "x",
                    "queries": ["@kestrel -is:retweet"],
                    "credentials": {"bearer_token": "AAAA-app", "user_access_token": "user-tok"},
                    "options": {"brand_handle": "kestrel"},
                }
            ],
        }
    )
    respx.get(SEARCH).mock(
        side_effect=[
            httpx.Response(200, json=_fixture("search_page1.json")),
            httpx.Response(200, json=_fixture("search_empty.json")),
        ]
    )
    posted = respx.post(TWEETS).mock(
        return_value=httpx.Response(201, json=_fixture("tweet_created.json"))
    )

    def connector_for(name: str):
        return build_connector(settings.connector(name), sleep=lambda _s: None)

    pipeline = Pipeline(
        settings,
        engine,
        analyzer_factory=lambda _s: analyzer,
        connector_factory=lambda c: build_connector(c, sleep=lambda _s: None),
    )
    run = pipeline.run_once()
    assert run.ingests[0].error is None and run.ingests[0].new >= 1

    bot = SlackBot(settings, engine, make_slack_client(settings.slack), connector_for=connector_for)
    bot.notifier.flush(refill=True)
    with session_scope(engine) as session:
        mention = session.exec(select(Mention).where(Mention.external_id == OUTAGE_POST)).one()
        case = session.exec(select(Case).where(Case.mention_id == mention.id)).one()
    assert case.status == CaseStatus.POSTED and case.slack_ts
    card = next(m for m in state.messages[CARE] if m["ts"] == case.slack_ts)
    assert "no mobile data in Riga" in json.dumps(card["blocks"], ensure_ascii=False)

    ack = bot.interaction(
        {
            "type": "block_actions",
            "user": {"id": SENDER},
            "channel": {"id": CARE},
            "actions": [{"action_id": APPROVE, "value": str(case.id)}],
        }
    )
    ack.work()

    assert posted.call_count == 1
    sent = json.loads(posted.calls[0].request.content)
    assert sent["reply"] == {"in_reply_to_tweet_id": OUTAGE_POST}
    assert posted.calls[0].request.headers["Authorization"] == "Bearer user-tok"
    with session_scope(engine) as session:
        closed = session.get(Case, case.id)
        reply = session.exec(select(OutboundReply)).one()
    assert closed.status == CaseStatus.REPLIED
    assert reply.external_id == "2124780519936765952"
    card = next(m for m in state.messages[CARE] if m["ts"] == case.slack_ts)
    outcome = card["blocks"][-1]["text"]["text"]
    assert outcome.startswith(f":white_check_mark: *Replied by <@{SENDER}>*")
    assert "x.com/kestrel/status/2124780519936765952" in outcome
    assert [call.body["ts"] for call in state.calls_to("chat.update")] == [case.slack_ts]

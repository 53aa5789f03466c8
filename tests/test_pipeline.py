"""The pipeline and scheduler on the real store and the real models."""

from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path

import httpx
import pytest
import respx
from sqlmodel import select

from connectors.registry import build_connector
from tests.conftest import write_jsonl
from triage.clock import utcnow
from triage.config import ConnectorSettings, Settings
from triage.pipeline import Pipeline
from triage.scheduler import ConnectorScheduler, backoff_seconds
from triage.store import Analysis, Case, Draft, Mention, make_engine, session_scope, upgrade
from triage.store.queries import get_state, open_queue

ROWS = [
    {
        "id": "1",
        "platform": "x",
        "text": "@kestrel_help you charged me twice this month and nobody answers. Refund now!",
        "author": "Anna Smith",
        "handle": "@anna",
        "followers": 120,
    },
    {
        "id": "2",
        "platform": "x",
        "text": "Thank you @kestrel, the new phone is brilliant and delivery was so fast!",
        "author": "Tom",
        "handle": "@tom",
    },
    {
        "id": "3",
        "platform": "rss",
        "text": "Kestrel announces its quarterly results and a new store opening in Riga.",
    },
    {
        "id": "4",
        "platform": "trustpilot",
        "text": "My phone battery is swelling and got really hot while charging. Is this safe?",
        "author": "Marek",
        "rating": 1,
    },
]


def _settings(url: str, *connectors: ConnectorSettings) -> Settings:
    return Settings.model_validate(
        {"database": {"url": url}, "connectors": [c.model_dump() for c in connectors]}
    )


def _file(name: str, path) -> ConnectorSettings:
    return ConnectorSettings(name=name, type="file", interval=60, options={"path": str(path)})


@pytest.fixture
def pipeline_factory(db_url, request):
    engines = []

    def build(*connectors: ConnectorSettings) -> Pipeline:
        engine = make_engine(db_url)
        upgrade(engine)
        engines.append(engine)
        # The real models load only when a test has mentions to analyze; retries never sleep.
        return Pipeline(
            _settings(db_url, *connectors),
            engine,
            analyzer_factory=lambda _s: request.getfixturevalue("analyzer"),
            connector_factory=partial(build_connector, sleep=lambda _seconds: None),
        )

    yield build
    for engine in engines:
        engine.dispose()


@pytest.mark.model
def test_run_once_stores_analyzes_opens_cases_and_drafts(tmp_path, pipeline_factory):
    write_jsonl(tmp_path / "in.jsonl", ROWS)
    pipeline = pipeline_factory(_file("imports", tmp_path / "in.jsonl"))
    run = pipeline.run_once()
    assert [(i.connector, i.new, i.error) for i in run.ingests] == [("imports", 4, None)]
    assert run.process.analyzed == 4

    with session_scope(pipeline.engine) as session:
        analyses = {
            m.external_id: a
            for m, a in session.exec(select(Mention, Analysis).join(Analysis)).all()
        }
        assert analyses["1"].kind == "complaint"
        assert "mentions a billing problem" in analyses["1"].reasons
        assert analyses["2"].kind == "praise" and analyses["2"].priority == "P4"
        assert analyses["3"].kind == "info"
        assert analyses["4"].priority == "P1" and analyses["4"].escalate
        queue = open_queue(session)
        # News opens no case; the safety issue is on top; every case has a draft.
        assert queue[0][1].external_id == "4"
        assert {m.external_id for _c, m, _a, _d in queue} == {"1", "2", "4"}
        assert all(d is not None and d.text for _c, _m, _a, d in queue)
        assert "Anna" in next(d.text for _c, m, _a, d in queue if m.external_id == "1")

    # Running again finds nothing new and duplicates nothing.
    again = pipeline.run_once()
    assert again.ingests[0].new == 0 and again.process.analyzed == 0
    with session_scope(pipeline.engine) as session:
        assert len(session.exec(select(Case)).all()) == 3
        assert len(session.exec(select(Draft)).all()) == 3


@pytest.mark.model
def test_a_failing_connector_never_stops_the_others(tmp_path, pipeline_factory, caplog):
    write_jsonl(tmp_path / "good.jsonl", ROWS[:2])
    broken = _file("broken", tmp_path / "missing.jsonl")
    pipeline = pipeline_factory(broken, _file("good", tmp_path / "good.jsonl"))
    scheduler = ConnectorScheduler(pipeline)

    with caplog.at_level(logging.INFO, logger="triage"):
        failed = scheduler.run_connector("broken")
        failed_again = scheduler.run_connector("broken")
        good = scheduler.run_connector("good")
        scheduler.analyze()
    assert failed.error and failed_again.consecutive_failures == 2
    assert good.error is None and good.new == 2
    # Logged when it started failing, not on every run.
    assert sum("connector broken failed" in r.getMessage() for r in caplog.records) == 1

    with session_scope(pipeline.engine) as session:
        assert get_state(session, name="broken").consecutive_failures == 2
        assert len(session.exec(select(Analysis)).all()) == 2

    write_jsonl(tmp_path / "missing.jsonl", ROWS[2:])
    with caplog.at_level(logging.INFO, logger="triage"):
        recovered = scheduler.run_connector("broken")
    assert recovered.error is None and recovered.new == 2
    assert any("connector broken recovered" in r.getMessage() for r in caplog.records)


def test_backoff_grows_and_is_capped():
    assert backoff_seconds(300, 0) == 300
    assert backoff_seconds(300, 1) == 300
    assert backoff_seconds(300, 3) == 1200
    assert backoff_seconds(300, 30) == 6 * 3600


@pytest.mark.parametrize(
    ("response", "expected_delay"),
    [
        (httpx.Response(429, headers={"Retry-After": "7200"}), 7200),
        (httpx.Response(401), 6 * 3600),
        (httpx.Response(503), 60),
    ],
)
def test_failures_push_the_next_poll_back(pipeline_factory, response, expected_delay):
    feed = ConnectorSettings(
        name="feed", type="rss", interval=60, options={"url": "https://feeds.example/kestrel.rss"}
    )
    pipeline = pipeline_factory(feed)
    scheduler = ConnectorScheduler(pipeline)
    scheduler.start(paused=True)
    try:
        with respx.mock(assert_all_called=False) as mock:
            mock.get("https://feeds.example/kestrel.rss").mock(return_value=response)
            before = utcnow()
            report = scheduler.run_connector("feed")
        assert report.error and report.new == 0
        next_run = scheduler._scheduler.get_job("feed").next_run_time
        delay = (next_run - before).total_seconds()
        assert expected_delay - 1 <= delay <= expected_delay + 2
    finally:
        scheduler.stop()


FIXTURES = Path(__file__).parent / "fixtures"
# One recorded first page per search API, then an empty page that ends the walk.
SEARCH_PAGES = [
    (
        "https://oauth.reddit.com/search",
        "reddit/search_page1.json",
        {"kind": "Listing", "data": {"after": None, "children": []}},
    ),
    (
        "https://bsky.social/xrpc/app.bsky.feed.searchPosts",
        "bluesky/search_page1.json",
        {"posts": []},
    ),
    (
        "https://api.x.com/2/tweets/search/recent",
        "x/search_page1.json",
        {"meta": {"result_count": 0}},
    ),
    (
        "https://www.googleapis.com/youtube/v3/commentThreads",
        "youtube/threads_page1.json",
        {"kind": "youtube#commentThreadListResponse", "items": []},
    ),
]


@pytest.mark.model
def test_a_mention_from_each_source_flows_through_the_pipeline(tmp_path, pipeline_factory):
    write_jsonl(tmp_path / "in.jsonl", ROWS[:1])
    pipeline = pipeline_factory(
        _file("imports", tmp_path / "in.jsonl"),
        ConnectorSettings(
            name="alerts", type="rss", options={"url": "https://www.google.com/alerts/feeds/1/2"}
        ),
        ConnectorSettings(name="hn", type="hackernews", queries=["kestrel"]),
        ConnectorSettings(
            name="fedi",
            type="mastodon",
            options={"instance": "https://mastodon.social"},
            credentials={"access_token": "token"},
        ),
        ConnectorSettings(
            name="rd",
            type="reddit",
            queries=["kestrel"],
            options={"username": "kestrel_care"},
            credentials={"client_id": "id", "client_secret": "secret"},
        ),
        ConnectorSettings(
            name="sky",
            type="bluesky",
            queries=["kestrel"],
            credentials={"identifier": "kestrel.bsky.social", "app_password": "app-pass"},
        ),
        ConnectorSettings(
            name="tw", type="x", queries=["@kestrel"], credentials={"bearer_token": "t"}
        ),
        ConnectorSettings(
            name="yt", type="youtube", options={"video_ids": ["abc"]}, credentials={"api_key": "k"}
        ),
        ConnectorSettings(name="ios", type="appstore", options={"app_id": "1451234567"}),
        ConnectorSettings(
            name="play",
            type="googleplay",
            options={"package_name": "com.kestrel.mobile"},
            credentials={"service_account_json": _service_account()},
        ),
        ConnectorSettings(
            name="tp",
            type="trustpilot",
            options={"business_unit_id": "5f3a1b2c4d5e6f0012345678"},
            credentials={"api_key": "k"},
        ),
        ConnectorSettings(
            name="gbp",
            type="google_business",
            options={"account_id": "1", "location_ids": ["2"]},
            credentials={"client_id": "c", "client_secret": "s", "refresh_token": "r"},
        ),
    )
    hn_first = json.loads((FIXTURES / "hackernews" / "search_page0.json").read_text("utf-8"))
    hn_first["nbPages"] = 1
    with respx.mock:
        respx.get("https://www.google.com/alerts/feeds/1/2").mock(
            return_value=httpx.Response(
                200,
                content=(FIXTURES / "rss" / "google_alerts.xml").read_bytes(),
                headers={"Content-Type": "application/atom+xml"},
            )
        )
        respx.get("https://hn.algolia.com/api/v1/search_by_date").mock(
            return_value=httpx.Response(200, json=hn_first)
        )
        respx.get("https://mastodon.social/api/v1/notifications").mock(
            side_effect=[
                httpx.Response(
                    200,
                    content=(FIXTURES / "mastodon" / "notifications_page1.json").read_bytes(),
                    headers={"Content-Type": "application/json"},
                ),
                httpx.Response(200, json=[]),
            ]
        )
        for url, first, empty in SEARCH_PAGES:
            respx.get(url).mock(
                side_effect=[
                    httpx.Response(200, json=json.loads((FIXTURES / first).read_text("utf-8"))),
                    httpx.Response(200, json=empty),
                ]
            )
        respx.post("https://www.reddit.com/api/v1/access_token").mock(
            return_value=httpx.Response(200, json=_fixture("reddit/token.json"))
        )
        respx.get("https://bsky.social/xrpc/app.bsky.notification.listNotifications").mock(
            return_value=httpx.Response(200, json=_fixture("bluesky/notifications_page1.json"))
        )
        respx.post("https://bsky.social/xrpc/com.atproto.server.createSession").mock(
            return_value=httpx.Response(200, json=_fixture("bluesky/session.json"))
        )
        feed = "https://itunes.apple.com/us/rss/customerreviews/page={}/id=1451234567/sortby=mostrecent/json"
        respx.get(feed.format(1)).mock(
            return_value=httpx.Response(200, json=_fixture("appstore/feed_us.json"))
        )
        respx.get(feed.format(2)).mock(
            return_value=httpx.Response(200, json=_fixture("appstore/feed_empty.json"))
        )
        respx.post("https://oauth2.googleapis.com/token").mock(
            return_value=httpx.Response(200, json={"access_token": "ya29", "expires_in": 3599})
        )
        respx.get(
            "https://androidpublisher.googleapis.com/androidpublisher/v3/applications/"
            "com.kestrel.mobile/reviews"
        ).mock(return_value=httpx.Response(200, json=_fixture("googleplay/reviews_page2.json")))
        respx.get(url__startswith="https://api.trustpilot.com/v1/business-units/").mock(
            return_value=httpx.Response(200, json=_fixture("trustpilot/reviews_page2.json"))
        )
        respx.get("https://mybusiness.googleapis.com/v4/accounts/1/locations/2/reviews").mock(
            return_value=httpx.Response(200, json=_fixture("google_business/reviews_page2.json"))
        )
        run = pipeline.run_once()
    sources = (
        *("imports", "alerts", "hn", "fedi", "rd", "sky", "tw", "yt"),
        *("ios", "play", "tp", "gbp"),
    )
    assert {i.connector: i.error for i in run.ingests} == dict.fromkeys(sources)
    with session_scope(pipeline.engine) as session:
        analyzed = session.exec(select(Mention.source, Analysis.priority).join(Analysis)).all()
    assert {source for source, _priority in analyzed} == set(sources)


def _service_account() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return json.dumps(
        {"client_email": "triage@kestrel.iam.gserviceaccount.com", "private_key": pem}
    )


def _fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text("utf-8"))


@pytest.mark.model
def test_the_scheduler_first_analyzes_what_a_crash_left_behind(pipeline_factory):
    import time

    from triage.domain import NewMention
    from triage.store.queries import save_batch

    pipeline = pipeline_factory()
    with session_scope(pipeline.engine) as session:
        left = [
            NewMention(source="imports", external_id=r["id"], platform="x", text=r["text"])
            for r in ROWS
        ]
        save_batch(session, source="imports", mentions=left, cursor="after-crash")
    scheduler = ConnectorScheduler(pipeline)
    scheduler.start()
    try:
        deadline = time.monotonic() + 120
        analyzed = 0
        while analyzed < len(ROWS) and time.monotonic() < deadline:
            time.sleep(0.5)
            with session_scope(pipeline.engine) as session:
                analyzed = len(session.exec(select(Analysis)).all())
    finally:
        scheduler.stop()
    assert analyzed == len(ROWS)


@pytest.mark.model
@respx.mock
def test_a_configured_model_writes_the_drafts_and_the_template_covers_its_failures(
    tmp_path, db_url, analyzer
):
    from triage.drafts.llm import LlmDrafter

    write_jsonl(tmp_path / "in.jsonl", ROWS)
    url = "http://127.0.0.1:8000/v1"
    settings = Settings.model_validate(
        {
            "database": {"url": db_url},
            "drafts": {"llm": {"url": url, "model": "local"}},
            "connectors": [_file("imports", tmp_path / "in.jsonl").model_dump()],
        }
    )

    def reply(request: httpx.Request) -> httpx.Response:
        mention = json.loads(request.content)["messages"][1]["content"]
        if "charged" in mention:
            text = (
                "Hi Anna, sorry about the double charge. DM us the invoice number "
                "and we'll reply within 2 hours."
            )
            return httpx.Response(200, json={"choices": [{"message": {"content": text}}]})
        return httpx.Response(503, json={"error": "model is loading"})

    route = respx.post(f"{url}/chat/completions").mock(side_effect=reply)
    engine = make_engine(db_url)
    upgrade(engine)
    drafters: list[LlmDrafter] = []

    def drafter(llm, brand):
        drafters.append(LlmDrafter(llm, brand, client=httpx.Client()))
        return drafters[-1]

    pipeline = Pipeline(
        settings, engine, analyzer_factory=lambda _s: analyzer, drafter_factory=drafter
    )
    pipeline.run_once()
    with session_scope(engine) as session:
        rows = session.exec(select(Mention, Draft).join(Draft, Draft.mention_id == Mention.id))
        drafts = {m.external_id: d for m, d in rows.all()}
    assert drafts["1"].generator == "llm:local" and "double charge" in drafts["1"].text
    assert drafts["2"].generator.startswith("template:")
    assert "The model did not answer" in drafts["2"].note
    assert route.call_count >= 3 and len(drafters) == 1
    engine.dispose()

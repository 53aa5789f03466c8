"""The X connector against API-shaped recent search responses: mapping, paging, cursor, errors."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

import connectors.x
import triage.http
from connectors.base import AuthError, TransientError
from connectors.x import XConnector
from triage.config import ConfigError, ConnectorSettings
from triage.domain import Batch

FIXTURES = Path(__file__).parent.parent / "fixtures" / "x"
API = "https://api.x.com/2/tweets/search/recent"
LOGGER = "triage.connectors.xsearch"
TOKEN = "AAAAAAAAAAAAAAAAAAAAAMLheAAAAAAA0%2BuSeid%2BULvsea4JtiGRiSDSJSI%3DEUifiRBkKG5E2XzMDjRfl"
QUERY = "@kestrel OR kestrel -is:retweet"
NOW = datetime(2026, 11, 23, 8, 20, tzinfo=UTC)
NEXT_TOKEN = "b26v89c19zqg8o3fr5ylx6n0ptjh1ezx6yeh5q6gh4hdp"
TWEET_FIELDS = (
    "created_at,public_metrics,conversation_id,in_reply_to_user_id,referenced_tweets,lang,"
    "author_id,entities"
)


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixtures' posts are a few minutes old, well inside recent search's 7 days."""
    monkeypatch.setattr(connectors.x, "utcnow", lambda: NOW)
    monkeypatch.setattr(triage.http, "utcnow", lambda: NOW)


def body(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def settings(
    queries: list[str] | None = None,
    credentials: dict[str, str] | None = None,
    **options: Any,
) -> ConnectorSettings:
    return ConnectorSettings(
        name="xsearch",
        type="x",
        queries=[QUERY] if queries is None else queries,
        options=options,
        credentials={"bearer_token": TOKEN} if credentials is None else credentials,
    )


def connector(sleep: Sleeps | None = None, **kwargs: Any) -> XConnector:
    return XConnector(settings(**kwargs), sleep=sleep if sleep is not None else Sleeps())


def params(request: httpx.Request) -> dict[str, str]:
    return dict(request.url.params)


def search_params(**extra: str) -> dict[str, str]:
    return {
        "query": QUERY,
        "max_results": "100",
        "tweet.fields": TWEET_FIELDS,
        "expansions": "author_id",
        "user.fields": "name,username,public_metrics,verified",
        **extra,
    }


@respx.mock
def test_first_page_maps_every_field_the_api_gives() -> None:
    page1 = body("search_page1.json")
    del page1["meta"]["next_token"]
    route = respx.get(API).mock(return_value=httpx.Response(200, json=page1))
    (batch,) = connector().fetch(None)
    outage, roaming = batch.mentions

    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert params(request) == search_params()

    assert (outage.source, outage.platform) == ("xsearch", "x")
    assert outage.external_id == "2124778690706030369"
    # v2 escapes & in text; the mention carries the plain character.
    assert outage.text == (
        '@kestrel no mobile data in Riga since 6am & your status page says "all good". '
        "Anyone else? #KestrelDown"
    )
    assert outage.url == "https://x.com/ruta_k/status/2124778690706030369"
    assert (outage.author_name, outage.author_handle, outage.author_reach) == (
        "Rūta K.",
        "@ruta_k",
        1843,
    )
    assert outage.created_at == datetime(2026, 11, 23, 8, 14, 51, tzinfo=UTC)
    assert outage.engagement == 17 + 3 + 4 + 1
    assert (outage.thread_id, outage.parent_id) == ("2124778690706030369", None)
    assert outage.raw["mentioned_usernames"] == ["kestrel"]
    assert outage.raw["mentions_brand"] is True
    assert outage.raw["author_id"] == "1471203985764700160"
    assert outage.raw["lang"] == "en"

    # A reply that quotes another post: the parent is the replied_to reference only.
    assert roaming.url == "https://x.com/tomas_dev/status/2124774500595418128"
    assert (roaming.author_name, roaming.author_handle, roaming.author_reach) == (
        "Tomás",
        "@tomas_dev",
        96,
    )
    assert (roaming.thread_id, roaming.parent_id) == (
        "2124745442457657346",
        "2124762999813414915",
    )
    assert roaming.engagement == 2
    assert roaming.raw["in_reply_to_user_id"] == "1399822155463876612"
    # Names the brand without @-mentioning it.
    assert roaming.raw["mentions_brand"] is False

    # One page and no next_token: the walk is complete, meta.newest_id is saved.
    assert json.loads(batch.cursor or "") == {QUERY: "2124778690706030369"}


@respx.mock
def test_next_page_sends_next_token_and_saves_the_cursor_only_at_the_end() -> None:
    cursor = XConnector.dump_cursor({QUERY: "2124762999813414915"})
    route = respx.get(API).mock(
        side_effect=[
            httpx.Response(200, json=body("search_page1.json")),
            httpx.Response(200, json=body("search_page2.json")),
        ]
    )
    first, second = connector().fetch(cursor)

    since = "2124762999813414915"
    assert [params(call.request) for call in route.calls] == [
        search_params(since_id=since),
        search_params(since_id=since, next_token=NEXT_TOKEN),
    ]
    assert len(first.mentions) == 2 and len(second.mentions) == 1
    # Pages come newest first: saving page 1's newest_id before page 2 is stored could skip it.
    assert first.cursor == cursor
    assert json.loads(second.cursor or "") == {QUERY: "2124778690706030369"}

    billing = second.mentions[0]
    assert billing.author_handle == "@ieva_b" and billing.author_reach == 12044
    assert billing.raw["author_verified"] is True
    assert billing.raw["mentions_brand"] is False  # @kestrel_help is not among the queries


@respx.mock
def test_a_crash_mid_walk_keeps_the_old_cursor() -> None:
    cursor = XConnector.dump_cursor({QUERY: "2124762999813414915"})
    respx.get(API).mock(
        side_effect=[
            httpx.Response(200, json=body("search_page1.json")),
            *[httpx.Response(503)] * 4,
        ]
    )
    saved: list[str | None] = []
    with pytest.raises(TransientError):
        for batch in connector().fetch(cursor):
            saved.append(batch.cursor)
    assert saved == [cursor]


@respx.mock
def test_empty_page_keeps_the_cursor() -> None:
    cursor = XConnector.dump_cursor({QUERY: "2124778690706030369"})
    route = respx.get(API).mock(return_value=httpx.Response(200, json=body("search_empty.json")))
    assert list(connector().fetch(cursor)) == [Batch(mentions=[], cursor=cursor)]
    assert route.call_count == 1
    assert list(connector().fetch(None)) == [Batch(mentions=[], cursor="{}")]


@respx.mock
def test_rate_limited_then_ok_waits_until_the_reset() -> None:
    reset = int(NOW.timestamp()) + 42
    limited = {
        "x-rate-limit-limit": "450",
        "x-rate-limit-remaining": "0",
        "x-rate-limit-reset": str(reset),
    }
    route = respx.get(API).mock(
        side_effect=[
            httpx.Response(429, json=body("error_429.json"), headers=limited),
            httpx.Response(200, json=body("search_page2.json")),
        ]
    )
    sleeps = Sleeps()
    (batch,) = connector(sleeps).fetch(None)
    assert len(batch.mentions) == 1
    assert route.call_count == 2
    assert sleeps == [pytest.approx(42)]


@respx.mock
def test_few_calls_left_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    headers = {"x-rate-limit-remaining": "3", "x-rate-limit-reset": str(int(NOW.timestamp()))}
    respx.get(API).mock(
        return_value=httpx.Response(200, json=body("search_empty.json"), headers=headers)
    )
    with caplog.at_level(logging.INFO, logger=LOGGER):
        list(connector().fetch(None))
    assert "3 X search calls left until 2026-11-23T08:20:00+00:00" in caplog.text


@respx.mock
def test_unauthorized_is_fatal_and_names_the_bearer_token() -> None:
    route = respx.get(API).mock(return_value=httpx.Response(401, json=body("error_401.json")))
    sleeps = Sleeps()
    with pytest.raises(AuthError) as caught:
        list(connector(sleeps).fetch(None))
    message = str(caught.value)
    assert "HTTP 401" in message
    assert "connectors[xsearch].credentials.bearer_token was refused by X" in message
    assert caught.value.status == 401
    assert route.call_count == 1 and sleeps == []


@respx.mock
def test_client_not_enrolled_explains_the_project_and_access_level() -> None:
    respx.get(API).mock(
        return_value=httpx.Response(403, json=body("error_403_client_not_enrolled.json"))
    )
    with pytest.raises(AuthError) as caught:
        list(connector().fetch(None))
    message = str(caught.value)
    assert "HTTP 403" in message
    assert "connectors[xsearch].credentials.bearer_token was accepted" in message
    assert "attached to a Project" in message
    assert "access level must include GET /2/tweets/search/recent" in message
    assert caught.value.status == 403


@respx.mock
def test_malformed_posts_are_skipped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    page = body("search_page1.json")
    del page["meta"]["next_token"]
    good = page["data"]
    undated = {**good[0], "id": "2124778690706030999"}
    del undated["created_at"]
    textless = {**good[1], "id": "2124778690706030888"}
    del textless["text"]
    page["data"] = [undated, good[0], textless, good[1], "junk"]
    respx.get(API).mock(return_value=httpx.Response(200, json=page))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        (batch,) = connector().fetch(None)
    assert [m.external_id for m in batch.mentions] == [
        "2124778690706030369",
        "2124774500595418128",
    ]
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        "skipped post id='2124778690706030999': missing field 'created_at'",
        "skipped post id='2124778690706030888': missing field 'text'",
        "skipped an item without an id: post is a str, not an object",
    ]


@respx.mock
def test_partial_errors_are_logged_and_the_data_kept(caplog: pytest.LogCaptureFixture) -> None:
    page = body("search_page2.json")
    # The author is suspended: X leaves them out of includes and says so under errors.
    page["includes"]["users"] = []
    page["errors"] = [
        {
            "value": "15934222",
            "detail": "User has been suspended: [15934222].",
            "title": "Forbidden",
            "resource_type": "user",
            "parameter": "author_id",
            "resource_id": "15934222",
            "type": "https://api.twitter.com/2/problems/resource-not-found",
        }
    ]
    respx.get(API).mock(return_value=httpx.Response(200, json=page))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        (batch,) = connector().fetch(None)
    (billing,) = batch.mentions
    assert billing.url == "https://x.com/i/web/status/2124769933000376327"
    assert (billing.author_name, billing.author_handle, billing.author_reach) == (None, None, None)
    assert (
        "X reported a partial error, kept the rest: Forbidden: User has been suspended: "
        "[15934222]." in caplog.text
    )


def test_cursor_resume_sends_since_id_on_the_next_run() -> None:
    with respx.mock:
        respx.get(API).mock(return_value=httpx.Response(200, json=body("search_page2.json")))
        (first,) = connector().fetch(None)
    with respx.mock:
        route = respx.get(API).mock(
            return_value=httpx.Response(200, json=body("search_empty.json"))
        )
        (second,) = connector().fetch(first.cursor)
    assert params(route.calls.last.request)["since_id"] == "2124769933000376327"
    assert second.cursor == first.cursor


@respx.mock
def test_each_query_keeps_its_own_cursor() -> None:
    other = "kestrel roaming -is:retweet"
    cursor = XConnector.dump_cursor({QUERY: "2124762999813414915"})
    route = respx.get(API).mock(
        side_effect=[
            httpx.Response(200, json=body("search_empty.json")),
            httpx.Response(200, json=body("search_page2.json")),
        ]
    )
    batches = list(connector(queries=[QUERY, other]).fetch(cursor))
    first, second = (params(call.request) for call in route.calls)
    assert (first["query"], first["since_id"]) == (QUERY, "2124762999813414915")
    assert second["query"] == other and "since_id" not in second
    assert json.loads(batches[-1].cursor or "") == {
        QUERY: "2124762999813414915",
        other: "2124769933000376327",
    }


@respx.mock
def test_a_cursor_older_than_seven_days_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    # A post id from 2026-11-01, beyond recent search's reach: X would refuse it with a 400.
    stale = str((int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000) - 1288834974657) << 22)
    route = respx.get(API).mock(return_value=httpx.Response(200, json=body("search_page2.json")))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        (batch,) = connector().fetch(XConnector.dump_cursor({QUERY: stale}))
    assert "since_id" not in params(route.calls.last.request)
    assert "older than recent search's 7 days" in caplog.text
    assert json.loads(batch.cursor or "") == {QUERY: "2124769933000376327"}


@respx.mock
def test_max_results_and_max_pages() -> None:
    route = respx.get(API).mock(return_value=httpx.Response(200, json=body("search_page1.json")))
    batches = list(connector(max_results=10, max_pages=1).fetch(None))
    assert params(route.calls.last.request)["max_results"] == "10"
    # The walk was cut short: the cursor stays where it was.
    assert [b.cursor for b in batches] == ["{}"]


def test_check_settings_problems() -> None:
    assert XConnector.check_settings(settings()) == []
    assert XConnector.check_settings(settings(queries=[" "], credentials={})) == [
        "connectors[xsearch].credentials.bearer_token: required credential is missing; expected "
        "the app-only bearer token of an X developer app attached to a Project with recent "
        "search access",
        "connectors[xsearch].queries: at least one query is required; expected search terms "
        'such as ["@kestrel OR kestrel -is:retweet"]',
    ]
    for bad in (5, 101, "50", True):
        assert XConnector.check_settings(settings(max_results=bad)) == [
            f"connectors[xsearch].options.max_results: {bad!r} is not valid; "
            "expected a whole number of posts per page from 10 to 100"
        ]
    with pytest.raises(ConfigError):
        XConnector(settings(queries=[]))

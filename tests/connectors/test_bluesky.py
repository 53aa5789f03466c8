"""The Bluesky connector against API-shaped sessions and searches: mapping, paging, auth, cursor."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

import connectors.bluesky
import triage.http
from connectors.base import AuthError, TransientError
from connectors.bluesky import BlueskyConnector
from triage.config import ConnectorSettings

FIXTURES = Path(__file__).parent.parent / "fixtures" / "bluesky"
SERVICE = "https://bsky.social"
SESSION = f"{SERVICE}/xrpc/com.atproto.server.createSession"
REFRESH = f"{SERVICE}/xrpc/com.atproto.server.refreshSession"
SEARCH = f"{SERVICE}/xrpc/app.bsky.feed.searchPosts"
LOGGER = "triage.connectors.sky"
NOW = datetime(2025, 3, 4, 8, 0, tzinfo=UTC)
FIRST_SINCE = "2025-02-25T08:00:00.000Z"
NEWEST = "2025-03-04T07:41:22.118Z"
PASSWORD = "abcd-efgh-ijkl-mnop"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


SESSION_BODY = load("session.json")
ACCESS = SESSION_BODY["accessJwt"]
REFRESH_TOKEN = SESSION_BODY["refreshJwt"]
END = {"hitsTotal": 3, "posts": []}


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connectors.bluesky, "utcnow", lambda: NOW)
    monkeypatch.setattr(triage.http, "utcnow", lambda: NOW)


def connector(
    sleep: Sleeps | None = None, queries: list[str] | None = None, **options: Any
) -> BlueskyConnector:
    settings = ConnectorSettings(
        name="sky",
        type="bluesky",
        queries=queries or ["kestrel"],
        options=options,
        credentials={"identifier": "kestrel.bsky.social", "app_password": PASSWORD},
    )
    return BlueskyConnector(settings, sleep=sleep if sleep is not None else Sleeps())


def logged_in() -> respx.Route:
    return respx.post(SESSION).mock(return_value=httpx.Response(200, json=SESSION_BODY))


def params(request: httpx.Request) -> dict[str, str]:
    return dict(request.url.params)


def since(cursor: str | None) -> dict[str, str]:
    return json.loads(cursor or "")


@respx.mock
def test_first_page_maps_every_field_the_api_gives() -> None:
    login = logged_in()
    route = respx.get(SEARCH).mock(
        side_effect=[
            httpx.Response(200, json=load("search_page1.json")),
            httpx.Response(200, json=END),
        ]
    )
    first, last = connector().fetch(None)
    outage, thanks = first.mentions

    assert json.loads(login.calls.last.request.content) == {
        "identifier": "kestrel.bsky.social",
        "password": PASSWORD,
    }
    request = route.calls[0].request
    assert request.headers["Authorization"] == f"Bearer {ACCESS}"
    assert params(request) == {
        "q": "kestrel",
        "sort": "latest",
        "limit": "100",
        "since": FIRST_SINCE,
    }
    assert login.call_count == 1  # the session is reused for page 2

    assert (outage.source, outage.platform) == ("sky", "bluesky")
    assert (
        outage.external_id
        == "at://did:plc:r7utak2q3lv4x5y6z7a8b9c0/app.bsky.feed.post/3lje4k2ovxc2f"
    )
    assert outage.text.startswith("no mobile data in Riga since 6am & Kestrel's status page says")
    assert outage.url == "https://bsky.app/profile/ruta.bsky.social/post/3lje4k2ovxc2f"
    assert (outage.author_name, outage.author_handle, outage.author_reach) == (
        "Rūta K.",
        "@ruta.bsky.social",
        None,
    )
    assert outage.created_at == datetime(2025, 3, 4, 7, 41, 22, 118000, tzinfo=UTC)
    assert outage.engagement == 14 + 6 + 3 + 1
    assert (outage.thread_id, outage.parent_id) == (outage.external_id, None)
    assert outage.raw["cid"] == "bafyreigh7yfw3x6l5k2ydkbyk3rqvqmqclu3b5j3ohq7jwdfvuoxgfzbga"

    # A reply names its thread's root and its parent; their cids stay in raw for a later reply.
    assert thanks.author_name is None
    assert thanks.author_handle == "@tomas.dev"
    assert (
        thanks.thread_id == "at://did:plc:k3strelm0b1le7x2q4w5e6r7/app.bsky.feed.post/3ljdxwqa2os2y"
    )
    assert (
        thanks.parent_id == "at://did:plc:k3strelm0b1le7x2q4w5e6r7/app.bsky.feed.post/3ljdzr5xk7c2a"
    )
    assert thanks.raw["reply"]["root"]["cid"].startswith("bafyreif3ny")
    assert thanks.engagement == 2

    # Newest first: the mark moves only once the walk has reached its end.
    assert since(first.cursor) == {"kestrel": FIRST_SINCE}
    assert last.mentions == [] and since(last.cursor) == {"kestrel": NEWEST}


@respx.mock
def test_next_page_sends_the_response_cursor_and_saves_the_mark_only_at_the_end() -> None:
    logged_in()
    cursor = BlueskyConnector.dump_cursor({"kestrel": "2025-03-01T00:00:00.000Z"})
    route = respx.get(SEARCH).mock(
        side_effect=[
            httpx.Response(200, json=load("search_page1.json")),
            httpx.Response(200, json=load("search_page2.json")),
            httpx.Response(200, json=END),
        ]
    )
    first, second, last = connector().fetch(cursor)

    base = {"q": "kestrel", "sort": "latest", "limit": "100", "since": "2025-03-01T00:00:00.000Z"}
    assert [params(call.request) for call in route.calls] == [
        base,
        {**base, "cursor": "100"},
        {**base, "cursor": "200"},
    ]
    assert [len(b.mentions) for b in (first, second, last)] == [2, 1, 0]
    assert first.cursor == second.cursor == cursor
    assert since(last.cursor) == {"kestrel": NEWEST}
    billing = second.mentions[0]
    assert billing.author_name is None and billing.author_handle == "@ieva.bsky.social"
    assert billing.engagement == 5


@respx.mock
def test_a_crash_mid_walk_keeps_the_old_cursor() -> None:
    logged_in()
    cursor = BlueskyConnector.dump_cursor({"kestrel": "2025-03-01T00:00:00.000Z"})
    respx.get(SEARCH).mock(
        side_effect=[
            httpx.Response(200, json=load("search_page1.json")),
            *[httpx.Response(502)] * 4,
        ]
    )
    saved: list[str | None] = []
    with pytest.raises(TransientError):
        for batch in connector().fetch(cursor):
            saved.append(batch.cursor)
    assert saved == [cursor]


@respx.mock
def test_empty_page_keeps_the_cursor() -> None:
    logged_in()
    cursor = BlueskyConnector.dump_cursor({"kestrel": NEWEST})
    route = respx.get(SEARCH).mock(return_value=httpx.Response(200, json={"posts": []}))
    (batch,) = connector().fetch(cursor)
    assert batch.mentions == [] and batch.cursor == cursor
    assert route.call_count == 1


@respx.mock
def test_rate_limited_then_ok_waits_until_the_reset() -> None:
    logged_in()
    limited = {
        "RateLimit-Limit": "3000",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": str(int(NOW.timestamp()) + 12),
        "RateLimit-Policy": "3000;w=300",
    }
    route = respx.get(SEARCH).mock(
        side_effect=[
            httpx.Response(
                429,
                json={"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
                headers=limited,
            ),
            httpx.Response(200, json={"posts": []}),
        ]
    )
    sleeps = Sleeps()
    list(connector(sleeps).fetch(None))
    assert route.call_count == 2
    assert sleeps == [pytest.approx(12)]


@respx.mock
def test_a_refused_login_is_fatal_and_names_both_credentials() -> None:
    login = respx.post(SESSION).mock(
        return_value=httpx.Response(
            401,
            json={"error": "AuthenticationRequired", "message": "Invalid identifier or password"},
        )
    )
    search = respx.get(SEARCH)
    sleeps = Sleeps()
    with pytest.raises(AuthError) as caught:
        list(connector(sleeps).fetch(None))
    message = str(caught.value)
    assert "HTTP 401" in message
    assert "Invalid identifier or password" in message
    assert "connectors[sky].credentials.identifier" in message
    assert "connectors[sky].credentials.app_password" in message
    assert caught.value.status == 401
    assert login.call_count == 1 and search.call_count == 0 and sleeps == []


@respx.mock
def test_an_expired_access_token_is_refreshed_and_the_request_repeated() -> None:
    logged_in()
    fresh = {**SESSION_BODY, "accessJwt": "access-two", "refreshJwt": "refresh-two"}
    refresh = respx.post(REFRESH).mock(return_value=httpx.Response(200, json=fresh))
    expired = {"error": "ExpiredToken", "message": "Token has expired"}
    route = respx.get(SEARCH).mock(
        side_effect=[httpx.Response(400, json=expired), httpx.Response(200, json={"posts": []})]
    )
    list(connector().fetch(None))
    assert refresh.calls.last.request.headers["Authorization"] == f"Bearer {REFRESH_TOKEN}"
    assert [c.request.headers["Authorization"] for c in route.calls] == [
        f"Bearer {ACCESS}",
        "Bearer access-two",
    ]


@respx.mock
def test_a_refused_refresh_logs_in_again_once() -> None:
    fresh = {**SESSION_BODY, "accessJwt": "access-two"}
    login = respx.post(SESSION).mock(
        side_effect=[httpx.Response(200, json=SESSION_BODY), httpx.Response(200, json=fresh)]
    )
    respx.post(REFRESH).mock(
        return_value=httpx.Response(
            400, json={"error": "ExpiredToken", "message": "Token has been revoked"}
        )
    )
    route = respx.get(SEARCH).mock(
        side_effect=[
            httpx.Response(401, json={"error": "InvalidToken", "message": "Token is invalid"}),
            httpx.Response(200, json={"posts": []}),
        ]
    )
    list(connector().fetch(None))
    assert login.call_count == 2
    assert route.calls.last.request.headers["Authorization"] == "Bearer access-two"


@respx.mock
def test_malformed_posts_are_skipped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    logged_in()
    good = load("search_page1.json")["posts"]
    no_record = {key: value for key, value in good[0].items() if key != "record"}
    no_record["uri"] = "at://did:plc:r7utak2q3lv4x5y6z7a8b9c0/app.bsky.feed.post/3lje4zzzzzz2a"
    not_a_post = {**good[1], "uri": "at://did:plc:t0masx4y5z6a7b8c9d0e1f2g/app.bsky.feed.like/3x"}
    respx.get(SEARCH).mock(
        return_value=httpx.Response(200, json={"posts": [no_record, *good, not_a_post, "junk"]})
    )
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        (batch,) = connector().fetch(None)
    assert [m.external_id for m in batch.mentions] == [good[0]["uri"], good[1]["uri"]]
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        f"skipped post uri={no_record['uri']!r}: missing field 'record'",
        f"skipped post uri={not_a_post['uri']!r}: uri {not_a_post['uri']!r} is not a post uri",
        "skipped an item without an id: post is a str, not an object",
    ]
    # Skipped posts still count as seen; the one without a record is dated by indexedAt.
    assert since(batch.cursor) == {"kestrel": "2025-03-04T07:41:23.501Z"}


def test_cursor_resume_sends_since_on_the_next_run() -> None:
    with respx.mock:
        logged_in()
        respx.get(SEARCH).mock(
            side_effect=[
                httpx.Response(200, json=load("search_page1.json")),
                httpx.Response(200, json=END),
            ]
        )
        *_, first = connector().fetch(None)
    with respx.mock:
        logged_in()
        route = respx.get(SEARCH).mock(return_value=httpx.Response(200, json={"posts": []}))
        (second,) = connector().fetch(first.cursor)
    assert params(route.calls.last.request)["since"] == NEWEST
    assert second.cursor == first.cursor


@respx.mock
def test_each_query_keeps_its_own_mark() -> None:
    logged_in()
    cursor = BlueskyConnector.dump_cursor({"kestrel": "2025-03-01T00:00:00.000Z"})
    route = respx.get(SEARCH).mock(
        side_effect=[
            httpx.Response(200, json={"posts": load("search_page2.json")["posts"]}),
            httpx.Response(200, json={"posts": []}),
        ]
    )
    first, second = connector(queries=["kestrel", "kestrel mobile"]).fetch(cursor)
    assert [params(c.request)["since"] for c in route.calls] == [
        "2025-03-01T00:00:00.000Z",
        FIRST_SINCE,
    ]
    assert since(second.cursor) == {
        "kestrel": "2025-03-04T06:58:31.002Z",
        "kestrel mobile": FIRST_SINCE,
    }
    # The first query's walk finished, so its mark is saved before the second query starts.
    assert since(first.cursor) == since(second.cursor)


def test_check_settings_wants_credentials_queries_and_an_https_service() -> None:
    def check(
        credentials: dict[str, str] | None = None, queries: list[str] | None = None, **options: Any
    ) -> list[str]:
        return BlueskyConnector.check_settings(
            ConnectorSettings(
                name="sky",
                type="bluesky",
                queries=queries or [],
                options=options,
                credentials=credentials or {},
            )
        )

    good = {"identifier": "kestrel.bsky.social", "app_password": PASSWORD}
    assert check(good, ["kestrel"]) == []
    assert check(good, ["kestrel"], service="https://pds.kestrel.example") == []
    assert check() == [
        "connectors[sky].credentials.identifier: required credential is missing; expected the "
        "account's handle, e.g. kestrel.bsky.social",
        "connectors[sky].credentials.app_password: required credential is missing; expected an "
        "app password of the account (Settings > App passwords)",
        "connectors[sky].queries: at least one query is required; expected search terms such as "
        '["kestrel mobile"]',
    ]
    assert check(good, ["kestrel"], service="http://bsky.social") == [
        "connectors[sky].options.service: 'http://bsky.social' is not an https address; "
        "expected the https:// address of the account's PDS or entryway, e.g. https://bsky.social"
    ]

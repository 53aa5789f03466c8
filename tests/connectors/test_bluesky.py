"""The Bluesky connector against API-shaped sessions and searches: mapping, paging, auth, cursor."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

import connectors.bluesky
import triage.http
from connectors.base import AuthError, ReplyNotAllowed, SentReply, TransientError
from connectors.bluesky import BlueskyConnector, link_facets, tid_for
from triage.config import ConnectorSettings
from triage.domain import ReplyTarget

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
        options={"notifications": False, **options},
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


# --------------------------------------------------------------------------- replies

# Repo calls go to the PDS named in the session's DID document, not to the entryway.
PDS = "https://amanita.us-east.host.bsky.network"
CREATE = f"{PDS}/xrpc/com.atproto.repo.createRecord"
GET_RECORD = f"{PDS}/xrpc/com.atproto.repo.getRecord"
BRAND_DID = SESSION_BODY["did"]
KEY = "mention-7"
RKEY = tid_for(KEY)


def mentions() -> list[ReplyTarget]:
    """The two searched posts as stored mentions: a top-level post and a reply in a thread."""
    with respx.mock:
        logged_in()
        respx.get(SEARCH).mock(
            side_effect=[
                httpx.Response(200, json=load("search_page1.json")),
                httpx.Response(200, json=END),
            ]
        )
        first, _ = connector().fetch(None)
    return [
        ReplyTarget(
            external_id=m.external_id,
            platform=m.platform,
            url=m.url,
            author_handle=m.author_handle,
            thread_id=m.thread_id,
            parent_id=m.parent_id,
            raw=m.raw,
        )
        for m in first.mentions
    ]


def created(rkey: str = RKEY) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "uri": f"at://{BRAND_DID}/app.bsky.feed.post/{rkey}",
            "cid": "bafyreihq4kq6v7y2i3g5j2m4s6w2c7d4f3l7x2sqq3bq6lzzbmdkc2yxta",
            "commit": {"cid": "bafyreia3", "rev": "3ljeb7x5ocs2k"},
            "validationStatus": "valid",
        },
    )


def test_record_keys_are_valid_tids_fixed_by_the_key() -> None:
    assert re.fullmatch(r"[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}", RKEY)
    assert tid_for(KEY) == RKEY and tid_for("mention-8") != RKEY


def test_link_facets_count_utf8_bytes() -> None:
    text = "Paldies, Rūta! Statuss: https://status.kestrel.example/lv."
    [facet] = link_facets(text)
    start = len("Paldies, Rūta! Statuss: ".encode())
    url = "https://status.kestrel.example/lv"
    assert facet["index"] == {"byteStart": start, "byteEnd": start + len(url)}
    assert facet["features"] == [
        {"$type": "app.bsky.richtext.facet#link", "uri": "https://status.kestrel.example/lv"}
    ]


@respx.mock
def test_a_reply_in_a_thread_cites_its_root_and_the_mention_as_parent() -> None:
    _outage, in_thread = mentions()
    logged_in()
    route = respx.post(CREATE).mock(return_value=created())
    text = "Sorry Tomas, see https://status.kestrel.example for updates."
    sent = connector().reply(in_thread, text, key=KEY)

    assert sent == SentReply(
        external_id=f"at://{BRAND_DID}/app.bsky.feed.post/{RKEY}",
        url=f"https://bsky.app/profile/kestrel.bsky.social/post/{RKEY}",
    )
    request = route.calls[0].request
    assert request.headers["Authorization"] == f"Bearer {ACCESS}"
    body = json.loads(request.content)
    assert (body["repo"], body["collection"], body["rkey"]) == (
        BRAND_DID,
        "app.bsky.feed.post",
        RKEY,
    )
    record = body["record"]
    assert record["$type"] == "app.bsky.feed.post" and record["text"] == text
    assert record["reply"] == {
        "root": in_thread.raw["reply"]["root"],
        "parent": {"uri": in_thread.raw["uri"], "cid": in_thread.raw["cid"]},
    }
    assert record["facets"][0]["features"][0]["uri"] == "https://status.kestrel.example"
    assert record["createdAt"] == "2025-03-04T08:00:00.000Z"


@respx.mock
def test_a_top_level_mention_is_both_root_and_parent() -> None:
    outage, _ = mentions()
    logged_in()
    route = respx.post(CREATE).mock(return_value=created())
    connector().reply(outage, "We are on it.", key=KEY)
    reply = json.loads(route.calls[0].request.content)["record"]["reply"]
    assert reply["root"] == reply["parent"] == {"uri": outage.raw["uri"], "cid": outage.raw["cid"]}


@respx.mock
def test_a_retry_finds_the_record_the_key_already_wrote() -> None:
    outage, _ = mentions()
    logged_in()
    create = respx.post(CREATE).mock(
        return_value=httpx.Response(
            400, json={"error": "InvalidRequest", "message": "Record already exists"}
        )
    )
    lookup = respx.get(GET_RECORD).mock(
        return_value=httpx.Response(
            200,
            json={
                "uri": f"at://{BRAND_DID}/app.bsky.feed.post/{RKEY}",
                "cid": "bafyreihq4kq6v7y2i3g5j2m4s6w2c7d4f3l7x2sqq3bq6lzzbmdkc2yxta",
                "value": {"$type": "app.bsky.feed.post", "text": "We are on it."},
            },
        )
    )
    sent = connector().reply(outage, "We are on it.", key=KEY)
    assert sent.already_there and sent.external_id.endswith(RKEY)
    assert create.call_count == 1
    assert dict(lookup.calls[0].request.url.params) == {
        "repo": BRAND_DID,
        "collection": "app.bsky.feed.post",
        "rkey": RKEY,
    }


@respx.mock
def test_find_reply_is_none_when_the_record_does_not_exist() -> None:
    outage, _ = mentions()
    logged_in()
    respx.get(GET_RECORD).mock(
        return_value=httpx.Response(
            400, json={"error": "RecordNotFound", "message": "Could not locate record"}
        )
    )
    assert connector().find_reply(outage, KEY) is None


@respx.mock
def test_an_expired_token_is_renewed_and_the_reply_sent_once() -> None:
    outage, _ = mentions()
    logged_in()
    respx.post(REFRESH).mock(return_value=httpx.Response(200, json=SESSION_BODY))
    create = respx.post(CREATE).mock(
        side_effect=[
            httpx.Response(400, json={"error": "ExpiredToken", "message": "Token has expired"}),
            created(),
        ]
    )
    assert connector().reply(outage, "Hi", key=KEY).external_id.endswith(RKEY)
    assert create.call_count == 2


@respx.mock
def test_over_300_graphemes_sends_nothing_and_a_5xx_is_uncertain() -> None:
    outage, _ = mentions()
    logged_in()
    route = respx.post(CREATE).mock(return_value=httpx.Response(502))
    with pytest.raises(ReplyNotAllowed, match="301 characters"):
        connector().reply(outage, "👍🏽" * 301, key=KEY)
    assert route.call_count == 0
    assert connector().check_reply(outage, "👍🏽" * 300) == []
    with pytest.raises(TransientError) as raised:
        connector().reply(outage, "Hi", key=KEY)
    assert raised.value.uncertain and route.call_count == 1


# --------------------------------------------------------------------------- notifications

NOTIFICATIONS = f"{SERVICE}/xrpc/app.bsky.notification.listNotifications"


@respx.mock
def test_notifications_bring_mentions_that_match_no_query(caplog) -> None:
    logged_in()
    respx.get(SEARCH).mock(return_value=httpx.Response(200, json=END))
    notes = respx.get(NOTIFICATIONS).mock(
        side_effect=[
            httpx.Response(200, json=load("notifications_page1.json")),
            httpx.Response(200, json={"notifications": []}),
        ]
    )
    batches = list(connector(notifications=True).fetch(None))
    mentions = [m for b in batches for m in b.mentions]

    [mention] = mentions
    assert mention.external_id.endswith("/3ljf2xq4nbs2a")
    assert mention.text == "@kestrel.bsky.social kāpēc man divreiz noņēma naudu?"
    assert mention.author_handle == "@marija.bsky.social" and mention.raw["reason"] == "mention"
    assert mention.raw["cid"].startswith("bafyreidn3")  # a reply needs it
    assert "skipped post uri='at://did:plc:t0masx4y5z6a7b8c9d0e1f2g" in caplog.text
    request = notes.calls[0].request
    assert request.url.params.get_list("reasons") == ["mention", "reply", "quote"]
    assert request.url.params["limit"] == "100"
    assert notes.calls[1].request.url.params["cursor"] == "2025-03-04T07:30:01.000Z"
    saved = json.loads(batches[-1].cursor)
    assert saved[" notifications"] == "2025-03-04T07:55:02.112Z"
    # Page one kept the first-run mark: a crash there re-reads instead of skipping.
    assert json.loads(batches[-2].cursor)[" notifications"] == FIRST_SINCE


@respx.mock
def test_the_next_run_reads_notifications_only_down_to_the_mark() -> None:
    logged_in()
    respx.get(SEARCH).mock(return_value=httpx.Response(200, json=END))
    notes = respx.get(NOTIFICATIONS).mock(
        return_value=httpx.Response(200, json=load("notifications_page1.json"))
    )
    cursor = json.dumps({"kestrel": NEWEST, " notifications": "2025-03-04T07:55:02.112Z"})
    batches = list(connector(notifications=True).fetch(cursor))
    assert [m for b in batches for m in b.mentions] == []
    assert notes.call_count == 1


@respx.mock
def test_a_post_found_by_a_query_and_a_notification_is_yielded_once() -> None:
    logged_in()
    note = load("notifications_page1.json")["notifications"][0]
    post = {key: note[key] for key in ("uri", "cid", "author", "record", "indexedAt")}
    respx.get(SEARCH).mock(
        side_effect=[
            httpx.Response(200, json={"posts": [post], "cursor": "page2"}),
            httpx.Response(200, json=END),
        ]
    )
    respx.get(NOTIFICATIONS).mock(return_value=httpx.Response(200, json={"notifications": [note]}))
    batches = list(connector(notifications=True).fetch(None))
    mentions = [m for b in batches for m in b.mentions]

    assert [m.external_id for m in mentions] == [note["uri"]]
    assert "reason" not in mentions[0].raw  # the search hit came first
    saved = json.loads(batches[-1].cursor)
    assert saved[" notifications"] == note["indexedAt"]

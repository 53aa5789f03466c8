"""The Mastodon connector against API-shaped notifications: mapping, paging, cursor, errors."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

import triage.http
from connectors.base import (
    AuthError,
    PayloadError,
    ReplyNotAllowed,
    SentReply,
    TransientError,
)
from connectors.mastodon import MastodonConnector, _addressed
from triage.config import ConnectorSettings
from triage.domain import Batch, ReplyTarget

FIXTURES = Path(__file__).parent.parent / "fixtures" / "mastodon"
INSTANCE = "https://mastodon.social"
API = f"{INSTANCE}/api/v1/notifications"
LOGGER = "triage.connectors.fedi"
TOKEN = "ZA-Yj3aBD8U8Cm7lKUp-lm9O9BmDgdhHzDeqsY8tlL0"


def page(name: str) -> list[dict[str, Any]]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def next_link(max_id: str) -> dict[str, str]:
    """The Link header Mastodon sends: next (older, max_id) and prev (newer, min_id)."""
    return {
        "Link": f'<{API}?limit=40&max_id={max_id}&types%5B%5D=mention>; rel="next", '
        f'<{API}?limit=40&min_id=34975861&types%5B%5D=mention>; rel="prev"'
    }


def ok(name: str, max_id: str) -> httpx.Response:
    """A page of notifications with a next link to the page before max_id."""
    return httpx.Response(200, json=page(name), headers=next_link(max_id))


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def connector(sleep: Sleeps | None = None, **options: Any) -> MastodonConnector:
    settings = ConnectorSettings(
        name="fedi",
        type="mastodon",
        options={"instance": INSTANCE + "/", **options},
        credentials={"access_token": TOKEN},
    )
    return MastodonConnector(settings, sleep=sleep if sleep is not None else Sleeps())


def params(request: httpx.Request) -> dict[str, list[str]]:
    query = request.url.params
    return {key: query.get_list(key) for key in query}


@respx.mock
def test_first_page_maps_the_mentioned_statuses() -> None:
    route = respx.get(API).mock(
        return_value=httpx.Response(200, json=page("notifications_page1.json"))
    )
    (batch,) = connector().fetch(None)
    outage, thanks = batch.mentions

    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert params(request) == {"types[]": ["mention"], "limit": ["40"]}

    assert (outage.source, outage.platform) == ("fedi", "mastodon")
    assert outage.external_id == "114107382239857233"
    assert outage.text == (
        '@kestrel no mobile data in Riga since 6am & your status page says "all good". '
        "Anyone else?\n#KestrelDown"
    )
    assert outage.url == "https://mastodon.social/@ruta_k/114107382239857233"
    assert (outage.author_name, outage.author_handle, outage.author_reach) == (
        "Rūta K.",
        "@ruta_k",
        1843,
    )
    assert outage.created_at == datetime(2025, 3, 4, 7, 41, 22, tzinfo=UTC)
    assert outage.engagement == 14 + 6 + 3
    assert (outage.thread_id, outage.parent_id) == ("114107382239857233", None)
    assert outage.raw["notification_id"] == "34975861"

    # A remote account keeps its domain in the handle; a reply points at its parent.
    assert thanks.author_handle == "@tomas@fosstodon.org"
    assert thanks.url == "https://fosstodon.org/@tomas/114107267002981455"
    assert thanks.text == "@kestrel thanks, roaming in Lisbon worked without any setup\n~80 Mbps"
    assert (thanks.thread_id, thanks.parent_id) == ("114107250118772364", "114107250118772364")
    assert thanks.engagement == 2

    # One page and no next link: the walk is complete, the newest notification id is saved.
    assert json.loads(batch.cursor or "") == {"since_id": "34975861"}


@respx.mock
def test_next_page_follows_the_link_header_and_saves_the_cursor_only_at_the_end() -> None:
    cursor = json.dumps({"since_id": "34975700"})
    route = respx.get(API).mock(
        side_effect=[
            ok("notifications_page1.json", "34975822"),
            ok("notifications_page2.json", "34975790"),
            httpx.Response(200, json=[]),
        ]
    )
    first, second, last = connector().fetch(cursor)

    assert [params(call.request) for call in route.calls] == [
        {"types[]": ["mention"], "limit": ["40"], "since_id": ["34975700"]},
        # Mastodon's next link drops since_id; the connector keeps asking the run's question.
        {"types[]": ["mention"], "limit": ["40"], "since_id": ["34975700"], "max_id": ["34975822"]},
        {"types[]": ["mention"], "limit": ["40"], "since_id": ["34975700"], "max_id": ["34975790"]},
    ]
    assert len(first.mentions) == 2 and len(second.mentions) == 1 and last.mentions == []
    # Pages come newest first: saving page 1's top before page 2 is stored could skip page 2.
    assert first.cursor == cursor
    assert second.cursor == cursor
    assert json.loads(last.cursor or "") == {"since_id": "34975861"}

    billing = second.mentions[0]
    assert billing.text == (
        "billing rant\n\n@kestrel third bill in a row charged twice. "
        "I want a refund, not another chat bot."
    )
    assert billing.author_name == "ieva"  # no display name: the user name
    assert billing.author_handle == "@ieva@mstdn.social"
    assert billing.raw["visibility"] == "direct"


@respx.mock
def test_a_crash_mid_walk_keeps_the_old_cursor() -> None:
    cursor = json.dumps({"since_id": "34975700"})
    respx.get(API).mock(
        side_effect=[
            ok("notifications_page1.json", "34975822"),
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
    cursor = json.dumps({"since_id": "34975861"})
    route = respx.get(API).mock(return_value=httpx.Response(200, json=[]))
    assert list(connector().fetch(cursor)) == [Batch(mentions=[], cursor=cursor)]
    assert route.call_count == 1
    assert list(connector().fetch(None)) == [Batch(mentions=[], cursor=None)]


@respx.mock
def test_rate_limited_then_ok_waits_until_the_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime(2025, 3, 4, 7, 45, tzinfo=UTC)
    monkeypatch.setattr(triage.http, "utcnow", lambda: now)
    limited = {
        "X-RateLimit-Limit": "300",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "2025-03-04T07:45:20.372Z",
    }
    route = respx.get(API).mock(
        side_effect=[
            httpx.Response(429, json={"error": "Too many requests"}, headers=limited),
            httpx.Response(200, json=page("notifications_page1.json")),
        ]
    )
    sleeps = Sleeps()
    (batch,) = connector(sleeps).fetch(None)
    assert len(batch.mentions) == 2
    assert route.call_count == 2
    assert sleeps == [pytest.approx(20.372)]


@respx.mock
def test_few_calls_left_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    headers = {"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": "2025-03-04T07:50:00.000Z"}
    respx.get(API).mock(return_value=httpx.Response(200, json=[], headers=headers))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        list(connector().fetch(None))
    assert "3 API calls left on https://mastodon.social until 2025-03-04T07:50:00.000Z" in (
        caplog.text
    )


@respx.mock
def test_unauthorized_is_fatal_and_names_the_access_token() -> None:
    route = respx.get(API).mock(
        return_value=httpx.Response(401, json={"error": "The access token is invalid"})
    )
    sleeps = Sleeps()
    with pytest.raises(AuthError) as caught:
        list(connector(sleeps).fetch(None))
    message = str(caught.value)
    assert "HTTP 401" in message
    assert "connectors[fedi].credentials.access_token" in message
    assert "read:notifications" in message
    assert "The access token is invalid" in message
    assert caught.value.status == 401
    assert route.call_count == 1 and sleeps == []


@respx.mock
def test_malformed_notifications_are_skipped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    good = page("notifications_page1.json")
    deleted = {**good[0], "id": "34975870", "status": None}
    undated = {**good[1], "id": "34975866", "status": {**good[1]["status"], "id": "1149"}}
    del undated["status"]["created_at"]
    follow = {**good[0], "id": "34975869", "type": "follow"}
    del follow["status"]
    respx.get(API).mock(
        return_value=httpx.Response(200, json=[deleted, follow, undated, *good, "junk"])
    )
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        (batch,) = connector().fetch(None)
    assert [m.external_id for m in batch.mentions] == ["114107382239857233", "114107267002981455"]
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        "skipped notification id='34975870': mention notification has no status (deleted?)",
        "skipped notification id='34975866': missing field 'created_at'",
        "skipped an item without an id: notification is a str, not an object",
    ]
    # Skipped notifications still count as seen: they would fail the same way next run.
    assert json.loads(batch.cursor or "") == {"since_id": "34975870"}


def test_cursor_resume_sends_since_id_on_the_next_run() -> None:
    with respx.mock:
        respx.get(API).mock(return_value=httpx.Response(200, json=page("notifications_page1.json")))
        (first,) = connector().fetch(None)
    with respx.mock:
        route = respx.get(API).mock(return_value=httpx.Response(200, json=[]))
        (second,) = connector().fetch(first.cursor)
    assert params(route.calls.last.request)["since_id"] == ["34975861"]
    assert second.cursor == first.cursor


@respx.mock
def test_an_unreadable_cursor_starts_from_scratch(caplog: pytest.LogCaptureFixture) -> None:
    route = respx.get(API).mock(return_value=httpx.Response(200, json=[]))
    list(connector().fetch("34975861"))
    assert "since_id" not in params(route.calls.last.request)
    assert "ignoring unreadable cursor" in caplog.text


@respx.mock
def test_max_pages_stops_without_moving_the_cursor() -> None:
    respx.get(API).mock(
        return_value=httpx.Response(
            200, json=page("notifications_page1.json"), headers=next_link("34975822")
        )
    )
    batches = list(connector(max_pages=1).fetch(None))
    assert [b.cursor for b in batches] == [None]


def test_check_settings_wants_an_https_instance_and_a_token() -> None:
    def check(credentials: dict[str, str] | None = None, **options: Any) -> list[str]:
        return MastodonConnector.check_settings(
            ConnectorSettings(
                name="fedi", type="mastodon", options=options, credentials=credentials or {}
            )
        )

    assert check({"access_token": TOKEN}, instance=INSTANCE) == []
    assert check() == [
        "connectors[fedi].options.instance: required option is missing; expected the https:// "
        "address of the account's instance, e.g. https://mastodon.social",
        "connectors[fedi].credentials.access_token: required credential is missing; expected an "
        "access token of the brand's account with the read:notifications scope (and "
        "write:statuses, read:accounts and read:statuses to reply)",
    ]
    assert check({"access_token": TOKEN}, instance="http://mastodon.social") == [
        "connectors[fedi].options.instance: 'http://mastodon.social' is not an https address; "
        "expected the https:// address of the account's instance, e.g. https://mastodon.social"
    ]


# --------------------------------------------------------------------------- replies

STATUSES = f"{INSTANCE}/api/v1/statuses"


def target(**raw: Any) -> ReplyTarget:
    return ReplyTarget(
        external_id="114107382239857233",
        platform="mastodon",
        author_handle="@ruta_k",
        raw={"visibility": "public", "language": "lv", **raw},
    )


@respx.mock
def test_reply_addresses_the_author_and_sends_the_idempotency_key() -> None:
    route = respx.post(STATUSES).mock(
        return_value=httpx.Response(200, json=page("status_created.json"))
    )
    sent = connector().reply(target(), "Sorry, Rūta: we are on it.", key="mention-7")
    assert sent == SentReply(
        external_id="114107511200450071", url="https://mastodon.social/@kestrel/114107511200450071"
    )
    request = route.calls[0].request
    assert request.headers["Idempotency-Key"] == "mention-7"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(request.content) == {
        "status": "@ruta_k Sorry, Rūta: we are on it.",
        "in_reply_to_id": "114107382239857233",
        "visibility": "public",
        "language": "lv",
    }


@respx.mock
def test_a_private_mention_gets_a_private_reply_and_a_written_name_is_not_doubled() -> None:
    route = respx.post(STATUSES).mock(
        return_value=httpx.Response(200, json=page("status_created.json"))
    )
    connector(reply_visibility="unlisted").reply(
        target(visibility="direct"), "@ruta_k we'll DM you", key="k"
    )
    connector(reply_visibility="unlisted").reply(target(), "thanks!", key="k2")
    bodies = [json.loads(call.request.content) for call in route.calls]
    assert [(b["status"], b["visibility"]) for b in bodies] == [
        ("@ruta_k we'll DM you", "direct"),
        ("@ruta_k thanks!", "unlisted"),
    ]


@respx.mock
def test_the_limit_counts_the_added_name_and_sends_nothing_when_over() -> None:
    route = respx.post(STATUSES).mock(return_value=httpx.Response(200, json={}))
    fits = "x" * (500 - len("@ruta_k "))
    assert connector().check_reply(target(), fits) == []
    over = r"501 characters as Mastodon counts them \(links 23\) long; mastodon allows 500"
    with pytest.raises(ReplyNotAllowed, match=over):
        connector().reply(target(), fits + "x", key="k")
    assert connector(max_characters=1000).check_reply(target(), fits + "x") == []
    assert route.call_count == 0


@respx.mock
@pytest.mark.parametrize(
    ("response", "error", "message"),
    [
        (
            httpx.Response(403, json={"error": "This action is outside the authorized scopes"}),
            AuthError,
            "write:statuses",
        ),
        (httpx.Response(404, json={"error": "Record not found"}), ReplyNotAllowed, "gone"),
        (
            httpx.Response(
                422,
                json={
                    "error": "Validation failed: Text character limit of 500 characters exceeded"
                },
            ),
            ReplyNotAllowed,
            "character limit of 500",
        ),
    ],
    ids=["403-scope", "404-deleted", "422-too-long"],
)
def test_reply_refusals_say_why(response, error, message) -> None:
    respx.post(STATUSES).mock(return_value=response)
    with pytest.raises(error, match=message) as raised:
        connector().reply(target(), "hi", key="k")
    assert raised.value.uncertain is False


@respx.mock
def test_a_5xx_on_the_reply_is_not_retried_and_is_uncertain() -> None:
    route = respx.post(STATUSES).mock(return_value=httpx.Response(502))
    with pytest.raises(TransientError) as raised:
        connector().reply(target(), "hi", key="k")
    assert raised.value.uncertain and route.call_count == 1
    # The Idempotency-Key alone is not trusted: a retry asks the thread first.
    assert not MastodonConnector.reply_is_idempotent


@respx.mock
def test_the_same_key_twice_sends_the_same_idempotency_key_and_gets_the_same_status() -> None:
    # Mastodon answers a repeated Idempotency-Key with the status it already made.
    route = respx.post(STATUSES).mock(
        return_value=httpx.Response(200, json=page("status_created.json"))
    )
    first = connector().reply(target(), "On it.", key="mention-7")
    again = connector().reply(target(), "On it.", key="mention-7")
    assert first == again and first.external_id == "114107511200450071"
    requests = [call.request for call in route.calls]
    assert [r.headers["Idempotency-Key"] for r in requests] == ["mention-7", "mention-7"]
    assert requests[0].content == requests[1].content


ACCOUNT = f"{INSTANCE}/api/v1/accounts/verify_credentials"
CONTEXT = f"{INSTANCE}/api/v1/statuses/114107382239857233/context"


@respx.mock
def test_find_reply_finds_the_brand_accounts_reply_in_the_thread() -> None:
    me = respx.get(ACCOUNT).mock(
        return_value=httpx.Response(200, json=page("account_verify_credentials.json"))
    )
    thread = respx.get(CONTEXT).mock(
        return_value=httpx.Response(200, json=page("status_context.json"))
    )
    found = connector().find_reply(target(), "mention-7", text="Sorry, Rūta:  we are on it.")
    # Not the other customer's reply, not our answer to them further down: ours to Rūta.
    assert found == SentReply(
        external_id="114107511200450071",
        url="https://mastodon.social/@kestrel/114107511200450071",
        already_there=True,
    )
    for route in (me, thread):
        assert route.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"


@respx.mock
def test_find_reply_says_none_when_the_brand_has_not_answered() -> None:
    respx.get(ACCOUNT).mock(
        return_value=httpx.Response(200, json=page("account_verify_credentials.json"))
    )
    respx.get(CONTEXT).mock(
        return_value=httpx.Response(200, json=page("status_context_no_reply.json"))
    )
    assert connector().find_reply(target(), "mention-7", text="On it.") is None


@respx.mock
@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>502</html>"),
        httpx.Response(200, json=["not", "a", "thread"]),
    ],
    ids=["html", "list"],
)
def test_find_reply_refuses_a_thread_it_cannot_read(response) -> None:
    respx.get(ACCOUNT).mock(
        return_value=httpx.Response(200, json=page("account_verify_credentials.json"))
    )
    respx.get(CONTEXT).mock(return_value=response)
    with pytest.raises(PayloadError, match="the post's thread"):
        connector().find_reply(target(), "mention-7", text="On it.")


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        ("@ruta_k, thanks!", "@ruta_k, thanks!"),
        ("@RUTA_K thanks", "@RUTA_K thanks"),
        ("@ruta_kalnina will help", "@ruta_k @ruta_kalnina will help"),
        ("thanks @ruta_k", "@ruta_k thanks @ruta_k"),
    ],
)
def test_the_name_is_added_unless_the_reply_already_starts_with_it(text, sent) -> None:
    assert _addressed(target(), text) == sent


# --------------------------------------------------------------------------- hashtags

TAG = f"{INSTANCE}/api/v1/timelines/tag/KestrelDown"


@respx.mock
def test_hashtag_timelines_follow_the_notifications_with_their_own_mark(caplog) -> None:
    respx.get(API).mock(return_value=httpx.Response(200, json=[]))
    tag = respx.get(TAG).mock(
        side_effect=[
            httpx.Response(
                200,
                json=page("tag_timeline.json"),
                headers={"Link": f'<{TAG}?max_id=114107400000000000>; rel="next"'},
            ),
            httpx.Response(200, json=[]),
        ]
    )
    start = json.dumps({"since_id": "34975800"})
    batches = list(connector(hashtags=["#KestrelDown"]).fetch(start))
    tagged = [m for b in batches for m in b.mentions]

    assert [m.external_id for m in tagged] == ["114107400000000002", "114107400000000001"]
    assert "#KestrelDown" in tagged[0].text
    assert "skipped item id='114107400000000000'" in caplog.text
    # The first tag page keeps the old cursor; the end of the walk records the tag's mark.
    assert json.loads(batches[1].cursor) == {"since_id": "34975800"}
    assert json.loads(batches[-1].cursor) == {
        "since_id": "34975800",
        "tags": {"KestrelDown": "114107400000000002"},
    }
    assert tag.calls[1].request.url.params["max_id"] == "114107400000000000"

    respx.get(TAG).mock(return_value=httpx.Response(200, json=[]))
    list(connector(hashtags=["KestrelDown"]).fetch(batches[-1].cursor))
    assert respx.calls.last.request.url.params["since_id"] == "114107400000000002"


def test_hashtags_must_be_a_list_of_names() -> None:
    problems = MastodonConnector.check_settings(
        ConnectorSettings(
            name="fedi",
            type="mastodon",
            options={"instance": INSTANCE, "hashtags": "kestrel"},
            credentials={"access_token": TOKEN},
        )
    )
    assert problems == [
        "connectors[fedi].options.hashtags: 'kestrel' is not valid; expected a list of hashtags "
        'without "#", e.g. ["kestrel", "KestrelDown"]'
    ]

"""The X connector against API-shaped recent search responses: mapping, paging, cursor, errors."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

import connectors.x
import triage.http
from connectors.base import (
    AuthError,
    PayloadError,
    ReplyNotAllowed,
    SentReply,
    TransientError,
)
from connectors.x import XConnector
from triage.config import ConfigError, ConnectorSettings
from triage.domain import Batch, NewMention, ReplyTarget

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


@pytest.fixture(autouse=True)
def no_user_sessions() -> Any:
    """Rotated user tokens live for the process; each test starts from the config."""
    connectors.x._SESSIONS.clear()
    yield
    connectors.x._SESSIONS.clear()


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
        "expansions": "author_id,referenced_tweets.id.author_id",
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
    # Names the brand without @-mentioning it, but quotes one of its posts.
    assert roaming.raw["mentions_brand"] is False
    assert roaming.raw["quoted_usernames"] == ["kestrel"]
    assert roaming.raw["quotes_brand"] is True
    assert outage.raw["quoted_usernames"] == [] and outage.raw["quotes_brand"] is False

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


# Replies ----------------------------------------------------------------------------------------

TWEETS = "https://api.x.com/2/tweets"
TOKEN_URL = "https://api.x.com/2/oauth2/token"
USER_TOKEN = "dGhlLWJyYW5kcy11c2VyLWFjY2Vzcy10b2tlbjoxNzk1NDEyOTI3MDAwOjE6MTphdDox"
REFRESH = "cmVmcmVzaC10b2tlbi1mcm9tLXRoZS1jb25maWc6MTc5NTQxMjkyNzAwMDoxOjE6cnQ6MQ"
CLIENT_ID = "M1M5R3BMVFhGeTNsTjZzWm82N3M6MTpjaQ"
CLIENT_SECRET = "kVn0Jq4hN8Tt2s-pXy7bWcE1fRuD5gLmZa3oHiK9vQe6YwBr"
REPLY = (
    "@ruta_k Sorry Rūta, there is a mobile data outage in Riga since 05:40. Our team is on it; "
    "updates at https://status.kestrel.example/incidents/riga-2026-11-23"
)
OUTAGE_ID = "2124778690706030369"
SENT_ID = "2124780519936765952"


def reply_connector(
    sleep: Sleeps | None = None, *, queries: list[str] | None = None, **credentials: str
) -> XConnector:
    return XConnector(
        settings(
            queries=queries,
            credentials={"bearer_token": TOKEN, "user_access_token": USER_TOKEN, **credentials},
        ),
        sleep=sleep if sleep is not None else Sleeps(),
    )


def targets() -> dict[str, ReplyTarget]:
    """The fixtures' posts as the act stage hands them over: mapped by the connector itself."""
    x = connector()
    mentions: list[NewMention] = []
    for name in ("search_page1.json", "search_page2.json"):
        page = body(name)
        users, included = connectors.x._users(page), connectors.x._included_tweets(page)
        mentions += [x._mention(tweet, users=users, included=included) for tweet in page["data"]]
    outage, roaming, billing = mentions
    return {
        name: ReplyTarget(
            external_id=m.external_id,
            platform=m.platform,
            url=m.url,
            author_handle=m.author_handle,
            thread_id=m.thread_id,
            parent_id=m.parent_id,
            raw=m.raw,
        )
        for name, m in (("outage", outage), ("roaming", roaming), ("billing", billing))
    }


def created() -> httpx.Response:
    return httpx.Response(201, json=body("tweet_created.json"))


def form(request: httpx.Request) -> dict[str, str]:
    return dict(httpx.QueryParams(request.content.decode()))


@respx.mock
def test_reply_posts_as_the_brand_with_the_exact_body() -> None:
    target = targets()["outage"]
    route = respx.post(TWEETS).mock(return_value=created())
    sent = reply_connector().reply(target, REPLY, key="mention-7")

    assert sent == SentReply(
        external_id=SENT_ID, url=f"https://x.com/kestrel/status/{SENT_ID}", already_there=False
    )
    (call,) = route.calls
    assert call.request.headers["Authorization"] == f"Bearer {USER_TOKEN}"
    assert call.request.headers["Content-Type"] == "application/json"
    assert json.loads(call.request.content) == {
        "text": REPLY,
        "reply": {"in_reply_to_tweet_id": OUTAGE_ID},
    }


@respx.mock
def test_the_url_uses_options_brand_handle() -> None:
    respx.post(TWEETS).mock(return_value=created())
    x = XConnector(
        settings(
            credentials={"bearer_token": TOKEN, "user_access_token": USER_TOKEN},
            brand_handle="@Kestrel",
        )
    )
    assert x.reply(targets()["outage"], "On it!", key="k").url == (
        f"https://x.com/Kestrel/status/{SENT_ID}"
    )


@pytest.mark.parametrize(
    ("text", "length"),
    [
        ("a" * 281, 281),
        # A link counts 23 whatever its length.
        ("a" * 257 + " https://status.kestrel.example/incidents/riga", 281),
        # CJK counts 2 per character.
        ("我" * 141, 282),
    ],
)
@respx.mock
def test_an_over_long_reply_sends_nothing(text: str, length: int) -> None:
    target = targets()["outage"]
    route = respx.post(TWEETS).mock(return_value=created())
    with pytest.raises(ReplyNotAllowed) as caught:
        reply_connector().reply(target, text, key="k")
    assert str(caught.value) == (
        f"the reply is {length} characters as X counts them (links 23, emoji and CJK 2) long; "
        "x allows 280"
    )
    assert route.call_count == 0
    assert respx.calls.call_count == 0


@respx.mock
def test_exactly_280_goes_out() -> None:
    route = respx.post(TWEETS).mock(return_value=created())
    reply_connector().reply(targets()["outage"], "a" * 256 + " https://x.example/a", key="k")
    assert route.call_count == 1


def test_missing_user_token_names_the_credential() -> None:
    target = targets()["outage"]
    x = connector()
    assert x.reply_unavailable() == (
        "replying on x needs connectors[xsearch].credentials.user_access_token; expected an "
        "OAuth 2.0 user access token of the brand's X account with the tweet.read, tweet.write "
        "and users.read scopes (add offline.access for a refresh token), from the app's "
        "authorization code flow with PKCE"
    )
    with respx.mock:
        with pytest.raises(ReplyNotAllowed, match=r"credentials\.user_access_token"):
            x.reply(target, "On it!", key="k")
        assert respx.calls.call_count == 0


def test_missing_brand_handle_names_the_option() -> None:
    x = reply_connector(queries=["kestrel mobile -is:retweet"])
    assert x.reply_unavailable() == (
        "replying on x needs connectors[xsearch].options.brand_handle (the queries name no single "
        "@-account); expected the brand's X user name that replies are posted as, e.g. kestrel"
    )
    two = reply_connector(queries=["@kestrel OR @kestrel_help"])
    assert two.reply_handle is None and two.reply_unavailable() is not None
    assert reply_connector().reply_handle == "kestrel"


@respx.mock
def test_self_serve_refuses_a_post_that_neither_mentions_nor_quotes_the_brand() -> None:
    billing = targets()["billing"]  # mentions @kestrel_help, which is not a configured account
    route = respx.post(TWEETS).mock(return_value=created())
    with pytest.raises(ReplyNotAllowed) as caught:
        reply_connector().reply(billing, "Sorry about that, Ieva.", key="k")
    assert str(caught.value) == (
        "X's self-serve API lets @kestrel reply only to posts that @-mention it or quote one of "
        "its posts, and this post does neither: open "
        "https://x.com/ieva_b/status/2124769933000376327 and reply on x.com, then mark the case "
        "replied (with Enterprise API access, set "
        'connectors[xsearch].options.reply_access = "enterprise")'
    )
    assert caught.value.uncertain is False
    assert route.call_count == 0


@respx.mock
def test_self_serve_allows_mentions_and_quotes_of_the_brand() -> None:
    posts = targets()
    route = respx.post(TWEETS).mock(return_value=created())
    x = reply_connector()
    x.reply(posts["outage"], "On it!", key="a")  # @kestrel in the text
    x.reply(posts["roaming"], "Glad it worked!", key="b")  # quotes a @kestrel post
    assert [json.loads(c.request.content)["reply"] for c in route.calls] == [
        {"in_reply_to_tweet_id": OUTAGE_ID},
        {"in_reply_to_tweet_id": "2124774500595418128"},
    ]
    # The account that was mentioned is the one replying: allowed.
    help_desk = XConnector(
        settings(
            credentials={"bearer_token": TOKEN, "user_access_token": USER_TOKEN},
            brand_handle="kestrel_help",
        )
    )
    help_desk.reply(posts["billing"], "Sorry about that, Ieva.", key="c")
    assert route.call_count == 3


@respx.mock
def test_enterprise_access_skips_the_mention_rule() -> None:
    route = respx.post(TWEETS).mock(return_value=created())
    x = XConnector(
        settings(
            credentials={"bearer_token": TOKEN, "user_access_token": USER_TOKEN},
            reply_access="enterprise",
        )
    )
    x.reply(targets()["billing"], "Sorry about that, Ieva.", key="k")
    assert route.call_count == 1


@pytest.mark.parametrize(
    "fixture", ["error_403_not_mentioned.json", "error_403_reply_not_allowed.json"]
)
@respx.mock
def test_x_refusing_the_reply_becomes_reply_not_allowed(fixture: str) -> None:
    route = respx.post(TWEETS).mock(return_value=httpx.Response(403, json=body(fixture)))
    sleeps = Sleeps()
    with pytest.raises(ReplyNotAllowed) as caught:
        reply_connector(sleeps).reply(targets()["outage"], "On it!", key="k")
    message = str(caught.value)
    assert message.startswith(
        "X's self-serve API lets @kestrel reply only to posts that @-mention it or quote one of "
        "its posts, and X refused this one (or its author limited who can reply): open "
        "https://x.com/ruta_k/status/2124778690706030369 and reply on x.com"
    )
    assert message.endswith(f"(X said: {body(fixture)['detail']})")
    assert (caught.value.status, caught.value.uncertain) == (403, False)
    assert route.call_count == 1 and sleeps == []


@respx.mock
def test_an_app_only_token_used_for_replies_is_explained() -> None:
    respx.post(TWEETS).mock(
        return_value=httpx.Response(403, json=body("error_403_unsupported_authentication.json"))
    )
    with pytest.raises(AuthError) as caught:
        reply_connector().reply(targets()["outage"], "On it!", key="k")
    assert (
        "connectors[xsearch].credentials.user_access_token is an app-only token; replies need "
        "a user's token" in str(caught.value)
    )
    assert not isinstance(caught.value, ReplyNotAllowed)


@respx.mock
def test_401_without_a_refresh_token_names_the_user_token() -> None:
    route = respx.post(TWEETS).mock(return_value=httpx.Response(401, json=body("error_401.json")))
    with pytest.raises(AuthError) as caught:
        reply_connector().reply(targets()["outage"], "On it!", key="k")
    assert "connectors[xsearch].credentials.user_access_token was refused for posting" in str(
        caught.value
    )
    assert caught.value.status == 401 and caught.value.uncertain is False
    assert route.call_count == 1


@respx.mock
def test_a_refused_user_token_is_refreshed_and_the_reply_sent_once_more(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refreshed = body("token_refreshed.json")
    token = respx.post(TOKEN_URL).mock(return_value=httpx.Response(200, json=refreshed))
    tweets = respx.post(TWEETS).mock(
        side_effect=[httpx.Response(401, json=body("error_401.json")), created()]
    )
    with caplog.at_level(logging.INFO, logger=LOGGER):
        sent = reply_connector(refresh_token=REFRESH, client_id=CLIENT_ID).reply(
            targets()["outage"], REPLY, key="k"
        )
    assert sent.external_id == SENT_ID

    (call,) = token.calls
    assert form(call.request) == {
        "refresh_token": REFRESH,
        "grant_type": "refresh_token",
        "client_id": CLIENT_ID,
    }
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "Authorization" not in call.request.headers  # a public client
    assert [c.request.headers["Authorization"] for c in tweets.calls] == [
        f"Bearer {USER_TOKEN}",
        f"Bearer {refreshed['access_token']}",
    ]
    assert json.loads(tweets.calls[0].request.content) == json.loads(
        tweets.calls[1].request.content
    )
    assert (
        "X rotated the refresh token: connectors[xsearch].credentials.refresh_token in the "
        "config is now spent" in caplog.text
    )
    for secret in (REFRESH, refreshed["refresh_token"], refreshed["access_token"], USER_TOKEN):
        assert secret not in caplog.text


@respx.mock
def test_the_rotated_pair_is_kept_for_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    refreshed = body("token_refreshed.json")
    again = {**refreshed, "access_token": "third-access", "refresh_token": "third-refresh"}
    token = respx.post(TOKEN_URL).mock(
        side_effect=[httpx.Response(200, json=refreshed), httpx.Response(200, json=again)]
    )
    tweets = respx.post(TWEETS).mock(
        side_effect=[
            httpx.Response(401, json=body("error_401.json")),
            created(),
            created(),
            created(),
        ]
    )
    target = targets()["outage"]
    credentials = {"refresh_token": REFRESH, "client_id": CLIENT_ID}
    reply_connector(**credentials).reply(target, "one", key="a")
    # A new instance (the act stage builds one per reply) uses the renewed token.
    reply_connector(**credentials).reply(target, "two", key="b")
    assert token.call_count == 1
    assert tweets.calls[2].request.headers["Authorization"] == f"Bearer {refreshed['access_token']}"

    # Two hours on, the token is renewed before posting, with the rotated refresh token.
    monkeypatch.setattr(connectors.x, "utcnow", lambda: NOW + timedelta(hours=2))
    reply_connector(**credentials).reply(target, "three", key="c")
    assert token.call_count == 2
    assert form(token.calls[1].request)["refresh_token"] == refreshed["refresh_token"]
    assert tweets.calls[3].request.headers["Authorization"] == "Bearer third-access"


@respx.mock
def test_a_confidential_client_refreshes_with_basic_auth() -> None:
    token = respx.post(TOKEN_URL).mock(
        return_value=httpx.Response(200, json=body("token_refreshed.json"))
    )
    respx.post(TWEETS).mock(
        side_effect=[httpx.Response(401, json=body("error_401.json")), created()]
    )
    reply_connector(refresh_token=REFRESH, client_id=CLIENT_ID, client_secret=CLIENT_SECRET).reply(
        targets()["outage"], "On it!", key="k"
    )
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert token.calls.last.request.headers["Authorization"] == f"Basic {basic}"
    assert form(token.calls.last.request)["client_id"] == CLIENT_ID


@respx.mock
def test_a_spent_refresh_token_asks_for_a_new_authorization() -> None:
    respx.post(TOKEN_URL).mock(
        return_value=httpx.Response(400, json=body("error_400_invalid_refresh_token.json"))
    )
    tweets = respx.post(TWEETS).mock(return_value=httpx.Response(401, json=body("error_401.json")))
    with pytest.raises(AuthError) as caught:
        reply_connector(refresh_token=REFRESH, client_id=CLIENT_ID).reply(
            targets()["outage"], "On it!", key="k"
        )
    message = str(caught.value)
    assert "HTTP 400" in message and "Value passed for the token was invalid." in message
    assert (
        "authorize the app again and update connectors[xsearch].credentials.user_access_token "
        "and connectors[xsearch].credentials.refresh_token" in message
    )
    assert "was refused for posting" not in message
    assert tweets.call_count == 1


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(503, json={"title": "Service Unavailable"}),
        httpx.ReadTimeout("read timed out"),
    ],
)
@respx.mock
def test_a_5xx_or_timeout_on_the_post_is_uncertain_and_not_retried(
    failure: httpx.Response | Exception,
) -> None:
    route = respx.post(TWEETS).mock(side_effect=[failure, created()])
    sleeps = Sleeps()
    with pytest.raises(TransientError) as caught:
        reply_connector(sleeps).reply(targets()["outage"], "On it!", key="k")
    assert caught.value.uncertain is True
    assert route.call_count == 1 and sleeps == []


@respx.mock
def test_429_on_the_post_waits_and_sends_again() -> None:
    route = respx.post(TWEETS).mock(
        side_effect=[
            httpx.Response(429, json=body("error_429.json"), headers={"Retry-After": "7"}),
            created(),
        ]
    )
    sleeps = Sleeps()
    sent = reply_connector(sleeps).reply(targets()["outage"], "On it!", key="k")
    assert sent.external_id == SENT_ID
    assert route.call_count == 2 and sleeps == [7.0]


@respx.mock
def test_a_201_without_an_id_is_uncertain() -> None:
    respx.post(TWEETS).mock(return_value=httpx.Response(201, json={"data": {}}))
    with pytest.raises(PayloadError) as caught:
        reply_connector().reply(targets()["outage"], "On it!", key="k")
    assert caught.value.uncertain is True


def find_params() -> dict[str, str]:
    return {
        "query": f"in_reply_to_tweet_id:{OUTAGE_ID} from:kestrel",
        "max_results": "100",
        "tweet.fields": "created_at,author_id,conversation_id,referenced_tweets",
    }


@respx.mock
def test_find_reply_searches_the_brands_replies_to_the_post() -> None:
    route = respx.get(API).mock(
        return_value=httpx.Response(200, json=body("find_reply_found.json"))
    )
    found = reply_connector().find_reply(targets()["outage"], "mention-7")
    assert found == SentReply(
        external_id=SENT_ID, url=f"https://x.com/kestrel/status/{SENT_ID}", already_there=True
    )
    request = route.calls.last.request
    assert params(request) == find_params()
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"  # the app-only token


@respx.mock
def test_find_reply_with_the_text_matches_through_t_co_links() -> None:
    respx.get(API).mock(return_value=httpx.Response(200, json=body("find_reply_found.json")))
    target = targets()["outage"]
    x = reply_connector()
    assert x.find_reply(target, "k", text=REPLY) is not None
    assert x.find_reply(target, "k", text="A different answer") is None


@respx.mock
def test_find_reply_finds_nothing() -> None:
    respx.get(API).mock(return_value=httpx.Response(200, json=body("search_empty.json")))
    assert reply_connector().find_reply(targets()["outage"], "k") is None
    # A reply in the same search that answers another post is not ours.
    other = body("find_reply_found.json")
    other["data"][0]["referenced_tweets"] = [{"type": "replied_to", "id": "2124774500595418128"}]
    respx.get(API).mock(return_value=httpx.Response(200, json=other))
    assert reply_connector().find_reply(targets()["outage"], "k") is None


@respx.mock
def test_an_uncertain_post_is_found_instead_of_posted_twice() -> None:
    target = targets()["outage"]
    tweets = respx.post(TWEETS).mock(side_effect=[httpx.Response(503), created()])
    search = respx.get(API).mock(
        return_value=httpx.Response(200, json=body("find_reply_found.json"))
    )
    x = reply_connector()
    with pytest.raises(TransientError) as caught:
        x.reply(target, REPLY, key="mention-7")
    assert caught.value.uncertain is True
    # What the act stage does before a retry of an unknown outcome:
    found = x.find_reply(target, "mention-7")
    assert found is not None and found.external_id == SENT_ID and found.already_there
    assert tweets.call_count == 1 and search.call_count == 1


@respx.mock
def test_a_duplicate_refusal_returns_the_earlier_reply() -> None:
    target = targets()["outage"]
    respx.post(TWEETS).mock(return_value=httpx.Response(403, json=body("error_403_duplicate.json")))
    search = respx.get(API).mock(
        return_value=httpx.Response(200, json=body("find_reply_found.json"))
    )
    sent = reply_connector().reply(target, REPLY, key="mention-7")
    assert sent == SentReply(
        external_id=SENT_ID, url=f"https://x.com/kestrel/status/{SENT_ID}", already_there=True
    )
    assert params(search.calls.last.request) == find_params()

    # A duplicate of some other recent post of the brand: nothing of ours to return.
    search.mock(return_value=httpx.Response(200, json=body("search_empty.json")))
    with pytest.raises(ReplyNotAllowed) as caught:
        reply_connector().reply(target, REPLY, key="mention-7")
    assert "duplicate of a recent post by @kestrel" in str(caught.value)
    assert "change the wording" in str(caught.value)


def test_reply_settings_problems() -> None:
    def check(credentials: dict[str, str] | None = None, **options: Any) -> list[str]:
        return XConnector.check_settings(
            settings(credentials={"bearer_token": TOKEN, **(credentials or {})}, **options)
        )

    assert check({"user_access_token": USER_TOKEN}, brand_handle="@kestrel") == []
    assert check(reply_access="enterprise") == []
    assert check(brand_handle="kestrel mobile", reply_access="premium") == [
        "connectors[xsearch].options.brand_handle: 'kestrel mobile' is not an X user name; "
        "expected the brand's X user name that replies are posted as, e.g. kestrel",
        "connectors[xsearch].options.reply_access: 'premium' is not valid; "
        'expected one of "self-serve" (the default) or "enterprise"',
    ]
    assert check({"refresh_token": REFRESH}) == [
        "connectors[xsearch].credentials.client_id: required with refresh_token; expected the "
        "OAuth 2.0 Client ID from the app's Keys and tokens page"
    ]

"""The Reddit connector against API-shaped Listings: OAuth, mapping, paging, cursor, errors."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

import connectors.reddit
from connectors.base import (
    AuthError,
    PayloadError,
    PermanentError,
    RateLimitedError,
    ReplyNotAllowed,
    SentReply,
    TransientError,
)
from connectors.reddit import RedditConnector
from triage.config import ConnectorSettings
from triage.domain import ReplyTarget

FIXTURES = Path(__file__).parent.parent / "fixtures" / "reddit"
TOKEN_URL = "https://www.reddit.com/api/v1/access_token"
SEARCH = "https://oauth.reddit.com/search"
LOGGER = "triage.connectors.rd"
CLIENT_ID = "p-jcoLKBynTLew"
CLIENT_SECRET = "gko_LXELoV07ZBNUXrvWZfzE3aI"
AGENT = "python:triage:0.1.0 (by /u/kestrel_care)"


@pytest.fixture(autouse=True)
def no_user_tokens() -> Any:
    """The brand account's token lives for the process; each test starts without one."""
    connectors.reddit._USER_TOKENS.clear()
    connectors.reddit._USER_NAMES.clear()
    yield
    connectors.reddit._USER_TOKENS.clear()
    connectors.reddit._USER_NAMES.clear()


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def ok(name: str) -> httpx.Response:
    return httpx.Response(200, json=fixture(name))


def token_response(token: str | None = None) -> httpx.Response:
    body = fixture("token.json")
    if token:
        body["access_token"] = token
    return httpx.Response(200, json=body)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def connector(
    sleep: Sleeps | None = None, queries: tuple[str, ...] = ("kestrel",), **options: Any
) -> RedditConnector:
    settings = ConnectorSettings(
        name="rd",
        type="reddit",
        queries=list(queries),
        options={"username": "kestrel_care", **options},
        credentials={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
    )
    return RedditConnector(settings, sleep=sleep if sleep is not None else Sleeps())


def params(request: httpx.Request) -> dict[str, str]:
    return dict(request.url.params)


def base_params(query: str = "kestrel", **extra: str) -> dict[str, str]:
    return {"q": query, "sort": "new", "type": "link", "limit": "100", "raw_json": "1", **extra}


@respx.mock
def test_first_page_maps_posts_with_an_app_only_token() -> None:
    token = respx.post(TOKEN_URL).mock(return_value=token_response())
    search = respx.get(SEARCH).mock(return_value=ok("search_page2.json"))
    (batch,) = connector().fetch(None)
    (billing,) = batch.mentions

    (token_call,) = token.calls
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert token_call.request.headers["Authorization"] == f"Basic {basic}"
    assert token_call.request.content == b"grant_type=client_credentials"
    assert token_call.request.headers["User-Agent"] == AGENT

    request = search.calls.last.request
    access_token = fixture("token.json")["access_token"]
    assert request.headers["Authorization"] == f"bearer {access_token}"
    assert request.headers["User-Agent"] == AGENT
    assert params(request) == base_params()

    assert (billing.source, billing.platform) == ("rd", "reddit")
    assert billing.external_id == "t3_1gxz9pe"
    assert billing.title == "Double charged by my phone carrier again"
    assert billing.text == (
        "Double charged by my phone carrier again\n\n"
        "Third bill in a row charged twice by Kestrel. I want a refund, not another chat bot."
    )
    assert billing.url == (
        "https://www.reddit.com/r/personalfinance/comments/1gxz9pe/"
        "double_charged_by_my_phone_carrier_again/"
    )
    assert billing.author_handle == "u/ieva_b"
    assert billing.created_at == datetime.fromtimestamp(1732361045, tz=UTC)
    assert billing.engagement == 12 + 9
    assert (billing.thread_id, billing.parent_id) == ("t3_1gxz9pe", None)
    assert billing.raw["subreddit"] == "personalfinance"

    # One page, no `after`: the walk is done and the mark moves to its newest post.
    assert json.loads(batch.cursor or "") == {
        "kestrel": {"since": 1732361045.0, "names": ["t3_1gxz9pe"]}
    }


@respx.mock
def test_next_page_follows_after_and_moves_the_mark_only_at_the_end() -> None:
    respx.post(TOKEN_URL).mock(return_value=token_response())
    search = respx.get(SEARCH).mock(side_effect=[ok("search_page1.json"), ok("search_page2.json")])
    first, second = connector().fetch(None)

    assert [params(call.request) for call in search.calls] == [
        base_params(),
        base_params(after="t3_1gyo2aa"),
    ]
    assert [m.external_id for m in first.mentions] == ["t3_1gyo6kq", "t3_1gyo2aa"]
    assert [m.external_id for m in second.mentions] == ["t3_1gxz9pe"]
    outage, esim = first.mentions
    assert outage.text.startswith("Kestrel mobile data down in Riga?\n\nSince this morning")
    assert '"no known issues" & closes' in outage.text  # raw_json=1: no &amp; to undo
    assert esim.text == "Kestrel eSIM worked out of the box in Lisbon, ~80 Mbps"
    assert esim.url == (
        "https://www.reddit.com/r/travel/comments/1gyo2aa/"
        "kestrel_esim_worked_out_of_the_box_in_lisbon_80/"
    )

    # Page 1 is newest first: moving `since` before page 2 is stored could skip page 2.
    assert json.loads(first.cursor or "") == {
        "kestrel": {"after": "t3_1gyo2aa", "newest": 1732438902.0, "newest_names": ["t3_1gyo6kq"]}
    }
    assert json.loads(second.cursor or "") == {
        "kestrel": {"since": 1732438902.0, "names": ["t3_1gyo6kq"]}
    }


def test_a_crash_mid_walk_resumes_below_the_last_saved_page() -> None:
    saved: list[str | None] = []
    with respx.mock:
        respx.post(TOKEN_URL).mock(return_value=token_response())
        respx.get(SEARCH).mock(side_effect=[ok("search_page1.json"), *[httpx.Response(503)] * 4])
        with pytest.raises(TransientError):
            for batch in connector().fetch(None):
                saved.append(batch.cursor)
    assert len(saved) == 1

    with respx.mock:
        respx.post(TOKEN_URL).mock(return_value=token_response())
        search = respx.get(SEARCH).mock(return_value=ok("search_page2.json"))
        (batch,) = connector().fetch(saved[0])
        assert params(search.calls.last.request) == base_params(after="t3_1gyo2aa")
    assert json.loads(batch.cursor or "") == {
        "kestrel": {"since": 1732438902.0, "names": ["t3_1gyo6kq"]}
    }


@respx.mock
def test_empty_page_keeps_the_cursor() -> None:
    respx.post(TOKEN_URL).mock(return_value=token_response())
    search = respx.get(SEARCH).mock(return_value=ok("search_empty.json"))
    cursor = json.dumps({"kestrel": {"since": 1732438902.0, "names": ["t3_1gyo6kq"]}})
    (batch,) = connector().fetch(cursor)
    assert batch.mentions == []
    assert json.loads(batch.cursor or "") == json.loads(cursor)
    assert search.call_count == 1

    (batch,) = connector().fetch(None)
    assert (batch.mentions, json.loads(batch.cursor or "")) == ([], {"kestrel": {}})


def test_cursor_resume_stops_at_posts_already_read() -> None:
    with respx.mock:
        respx.post(TOKEN_URL).mock(return_value=token_response())
        respx.get(SEARCH).mock(return_value=ok("search_page2.json"))
        (first,) = connector().fetch(None)
    with respx.mock:
        respx.post(TOKEN_URL).mock(return_value=token_response())
        search = respx.get(SEARCH).mock(return_value=ok("search_page1.json"))
        # Page 1 (with an after) then a page reaching the saved post: the walk stops there.
        search.side_effect = [ok("search_page1.json"), ok("search_page2.json")]
        new, reached = connector().fetch(first.cursor)
    assert [m.external_id for m in new.mentions] == ["t3_1gyo6kq", "t3_1gyo2aa"]
    assert reached.mentions == []
    assert search.call_count == 2
    assert json.loads(reached.cursor or "") == {
        "kestrel": {"since": 1732438902.0, "names": ["t3_1gyo6kq"]}
    }

    with respx.mock:
        respx.post(TOKEN_URL).mock(return_value=token_response())
        # Without a newer post the first page is all old: nothing kept, one request.
        search = respx.get(SEARCH).mock(return_value=ok("search_page1.json"))
        (again,) = connector().fetch(reached.cursor)
    assert again.mentions == [] and search.call_count == 1
    assert again.cursor == reached.cursor


@respx.mock
def test_each_query_and_a_subreddit_restriction() -> None:
    respx.post(TOKEN_URL).mock(return_value=token_response())
    search = respx.get("https://oauth.reddit.com/r/latvia/search").mock(
        return_value=ok("search_empty.json")
    )
    batches = list(connector(queries=("kestrel", "kestrel esim"), subreddit="r/latvia").fetch(None))
    assert len(batches) == 2
    assert [params(call.request) for call in search.calls] == [
        base_params(restrict_sr="1"),
        base_params("kestrel esim", restrict_sr="1"),
    ]


@respx.mock
def test_rate_limited_then_ok_waits_for_reddits_reset() -> None:
    token = respx.post(TOKEN_URL).mock(return_value=token_response())
    limited = {"X-Ratelimit-Remaining": "0.0", "X-Ratelimit-Used": "100", "X-Ratelimit-Reset": "42"}
    search = respx.get(SEARCH).mock(
        side_effect=[
            httpx.Response(
                429, json={"message": "Too Many Requests", "error": 429}, headers=limited
            ),
            ok("search_page2.json"),
        ]
    )
    sleeps = Sleeps()
    (batch,) = connector(sleeps).fetch(None)
    assert len(batch.mentions) == 1
    assert search.call_count == 2 and token.call_count == 1
    assert sleeps == [42.0]


@respx.mock
def test_few_calls_left_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    respx.post(TOKEN_URL).mock(return_value=token_response())
    headers = {"X-Ratelimit-Remaining": "3.0", "X-Ratelimit-Used": "97", "X-Ratelimit-Reset": "310"}
    respx.get(SEARCH).mock(
        return_value=httpx.Response(200, json=fixture("search_empty.json"), headers=headers)
    )
    with caplog.at_level(logging.INFO, logger=LOGGER):
        list(connector().fetch(None))
    assert "3 API calls left; the window resets in 310 seconds" in caplog.text


@respx.mock
def test_bad_app_credentials_name_client_id_and_secret() -> None:
    token = respx.post(TOKEN_URL).mock(
        return_value=httpx.Response(401, json={"message": "Unauthorized", "error": 401})
    )
    search = respx.get(SEARCH)
    sleeps = Sleeps()
    with pytest.raises(AuthError) as caught:
        list(connector(sleeps).fetch(None))
    message = str(caught.value)
    assert "HTTP 401" in message
    assert "connectors[rd].credentials.client_id and connectors[rd].credentials.client_secret" in (
        message
    )
    assert "https://www.reddit.com/prefs/apps" in message
    assert caught.value.status == 401
    assert token.call_count == 1 and search.call_count == 0 and sleeps == []


@respx.mock
def test_a_401_fetches_a_new_token_once() -> None:
    token = respx.post(TOKEN_URL).mock(
        side_effect=[token_response(t) for t in ("old", "new", "again", "fresh")]
    )
    unauthorized = httpx.Response(401, json={"message": "Unauthorized", "error": 401})
    search = respx.get(SEARCH).mock(side_effect=[unauthorized, ok("search_page2.json")])
    (batch,) = connector().fetch(None)
    assert len(batch.mentions) == 1
    assert token.call_count == 2
    assert [c.request.headers["Authorization"] for c in search.calls] == [
        "bearer old",
        "bearer new",
    ]

    search.side_effect = [unauthorized, unauthorized]
    with pytest.raises(AuthError) as caught:
        list(connector().fetch(None))
    assert "refused twice with a fresh token" in str(caught.value)
    assert "connectors[rd].credentials.client_id" in str(caught.value)


@respx.mock
def test_an_expired_token_is_refreshed(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(connectors.reddit, "monotonic", lambda: clock[0])
    token = respx.post(TOKEN_URL).mock(side_effect=[token_response("one"), token_response("two")])
    search = respx.get(SEARCH).mock(return_value=ok("search_empty.json"))
    reddit = connector()
    list(reddit.fetch(None))
    clock[0] += 3600
    list(reddit.fetch(None))
    assert token.call_count == 1
    clock[0] += 86400
    list(reddit.fetch(None))
    assert token.call_count == 2
    assert search.calls.last.request.headers["Authorization"] == "bearer two"


@respx.mock
def test_malformed_posts_are_skipped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    respx.post(TOKEN_URL).mock(return_value=token_response())
    listing = fixture("search_page1.json")
    good = listing["data"]["children"]
    undated = {"kind": "t3", "data": {**good[0]["data"], "name": "t3_1gyo9zz"}}
    del undated["data"]["created_utc"]
    untitled = {"kind": "t3", "data": {**good[1]["data"], "name": "t3_1gyo8yy"}}
    del untitled["data"]["title"]
    subreddit = {"kind": "t5", "data": {"name": "t5_2qhkd", "display_name": "latvia"}}
    listing["data"]["children"] = [undated, subreddit, *good, untitled, "junk"]
    listing["data"]["after"] = None
    respx.get(SEARCH).mock(return_value=httpx.Response(200, json=listing))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        (batch,) = connector().fetch(None)
    assert [m.external_id for m in batch.mentions] == ["t3_1gyo6kq", "t3_1gyo2aa"]
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        "skipped post name='t3_1gyo9zz': missing field 'created_utc'",
        "skipped post name='t3_1gyo8yy': missing field 'title'",
        "skipped an item without an id: child is a str, not an object",
    ]
    assert json.loads(batch.cursor or "") == {
        "kestrel": {"since": 1732438902.0, "names": ["t3_1gyo6kq"]}
    }


def test_check_settings_wants_queries_credentials_and_valid_names() -> None:
    def check(
        credentials: dict[str, str] | None = None,
        queries: tuple[str, ...] = ("kestrel",),
        **options: Any,
    ) -> list[str]:
        return RedditConnector.check_settings(
            ConnectorSettings(
                name="rd",
                type="reddit",
                queries=list(queries),
                options=options,
                credentials=credentials or {},
            )
        )

    good = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    assert check(good) == []
    assert check(good, username="u/kestrel_care", subreddit="/r/latvia") == []
    hint = (
        "expected the client id and secret of a Reddit app of type script or web app, "
        "from https://www.reddit.com/prefs/apps"
    )
    assert check(queries=(" ",)) == [
        f"connectors[rd].credentials.client_id: required credential is missing; {hint}",
        f"connectors[rd].credentials.client_secret: required credential is missing; {hint}",
        "connectors[rd].queries: at least one query is required; "
        'expected search terms such as ["kestrel mobile"]',
    ]
    assert check(good, username="kestrel care", subreddit="r/a b") == [
        "connectors[rd].options.username: 'kestrel care' is not a Reddit user name; expected "
        "the Reddit account that owns the app, e.g. kestrel_care (for the User-Agent)",
        "connectors[rd].options.subreddit: 'r/a b' is not a subreddit name; expected "
        "a subreddit name such as latvia, to search only there",
    ]


def test_user_agent_without_a_username() -> None:
    settings = ConnectorSettings(
        name="rd",
        type="reddit",
        queries=["kestrel"],
        credentials={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
    )
    assert RedditConnector(settings).user_agent == "python:triage:0.1.0"


@respx.mock
def test_forbidden_search_points_at_the_subreddit() -> None:
    respx.post(TOKEN_URL).mock(return_value=token_response())
    search = respx.get("https://oauth.reddit.com/r/latvia/search").mock(
        return_value=httpx.Response(403, json={"reason": "private", "message": "Forbidden"})
    )
    with pytest.raises(AuthError) as caught:
        list(connector(subreddit="latvia").fetch(None))
    assert "HTTP 403" in str(caught.value)
    assert "is options.subreddit private?" in str(caught.value)
    assert search.call_count == 1


# Replies ----------------------------------------------------------------------------------------

COMMENT = "https://oauth.reddit.com/api/comment"
COMMENTS = "https://oauth.reddit.com/user/kestrel_care/comments"
ME = "https://oauth.reddit.com/api/v1/me"
PASSWORD = "c0rrect-h0rse-battery-st4ple"
REFRESH = "122737834-Zk1qYl3mXrU8pW2vN5sT9aHdLeQo4g"
BILLING = "t3_1gxz9pe"
TEXT = (
    "Sorry about the double charge, Ieva. Please message us your account number and we will "
    "refund it today."
)
SENT = SentReply(
    external_id="t1_lz8k2qd",
    url="https://www.reddit.com/r/personalfinance/comments/1gxz9pe/"
    "double_charged_by_my_phone_carrier_again/lz8k2qd/",
)
PASSWORD_GRANT = {"username": "kestrel_care", "password": PASSWORD}


def reply_connector(sleep: Sleeps | None = None, **credentials: str) -> RedditConnector:
    settings = ConnectorSettings(
        name="rd",
        type="reddit",
        queries=["kestrel"],
        options={"username": "kestrel_care"},
        credentials={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **credentials},
    )
    return RedditConnector(settings, sleep=sleep if sleep is not None else Sleeps())


def billing() -> ReplyTarget:
    """The fixture's post as the act stage hands it over: mapped by the connector itself."""
    (child,) = fixture("search_page2.json")["data"]["children"]
    mention = connector()._mention(child)
    assert mention is not None
    return ReplyTarget(
        external_id=mention.external_id,
        platform=mention.platform,
        url=mention.url,
        author_handle=mention.author_handle,
        thread_id=mention.thread_id,
        raw=mention.raw,
    )


def form(request: httpx.Request) -> dict[str, str]:
    return dict(httpx.QueryParams(request.content.decode()))


def user_token(name: str = "user_token.json") -> httpx.Response:
    return httpx.Response(200, json=fixture(name))


@respx.mock
def test_reply_comments_as_the_brand_with_the_exact_form() -> None:
    target = billing()
    token = respx.post(TOKEN_URL).mock(return_value=user_token())
    comment = respx.post(COMMENT).mock(return_value=ok("comment_created.json"))
    assert reply_connector(**PASSWORD_GRANT).reply(target, TEXT, key="mention-3") == SENT

    (grant,) = token.calls
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert grant.request.headers["Authorization"] == f"Basic {basic}"
    assert form(grant.request) == {
        "grant_type": "password",
        "username": "kestrel_care",
        "password": PASSWORD,
    }
    (call,) = comment.calls
    assert (
        call.request.headers["Authorization"]
        == f"bearer {fixture('user_token.json')['access_token']}"
    )
    assert call.request.headers["User-Agent"] == AGENT
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form(call.request) == {"thing_id": BILLING, "text": TEXT, "api_type": "json"}


@respx.mock
def test_a_refresh_token_is_the_other_way_to_act_as_the_account() -> None:
    token = respx.post(TOKEN_URL).mock(return_value=user_token("user_token_refreshed.json"))
    comment = respx.post(COMMENT).mock(return_value=ok("comment_created.json"))
    reply_connector(refresh_token=REFRESH).reply(billing(), TEXT, key="k")
    assert form(token.calls.last.request) == {
        "grant_type": "refresh_token",
        "refresh_token": REFRESH,
    }
    refreshed = fixture("user_token_refreshed.json")["access_token"]
    assert comment.calls.last.request.headers["Authorization"] == f"bearer {refreshed}"


@pytest.mark.parametrize(
    ("target", "thing"),
    [
        (ReplyTarget(external_id="t1_lz7w1ab", platform="reddit"), "t1_lz7w1ab"),
        (ReplyTarget(external_id="1gxz9pe", platform="reddit", raw={"name": BILLING}), BILLING),
    ],
)
@respx.mock
def test_the_thing_id_is_the_fullname_of_a_post_or_comment(target: ReplyTarget, thing: str) -> None:
    respx.post(TOKEN_URL).mock(return_value=user_token())
    comment = respx.post(COMMENT).mock(return_value=ok("comment_created.json"))
    reply_connector(**PASSWORD_GRANT).reply(target, TEXT, key="k")
    assert form(comment.calls.last.request)["thing_id"] == thing


@respx.mock
def test_a_target_without_a_fullname_sends_nothing() -> None:
    target = ReplyTarget(external_id="1gxz9pe", platform="reddit")
    with pytest.raises(ReplyNotAllowed, match="not the fullname of a Reddit post"):
        reply_connector(**PASSWORD_GRANT).reply(target, TEXT, key="k")
    assert respx.calls.call_count == 0


@respx.mock
def test_an_over_long_reply_sends_nothing() -> None:
    target = billing()
    route = respx.post(COMMENT).mock(return_value=ok("comment_created.json"))
    with pytest.raises(ReplyNotAllowed) as caught:
        reply_connector(**PASSWORD_GRANT).reply(target, "x" * 10_001, key="k")
    assert str(caught.value) == "the reply is 10001 characters long; reddit allows 10000"
    assert route.call_count == 0 and respx.calls.call_count == 0


def test_without_the_accounts_credentials_reply_unavailable_explains_both_ways() -> None:
    reddit = reply_connector()
    expected = (
        "replying on reddit needs the brand account's authorization: either "
        "connectors[rd].credentials.username and connectors[rd].credentials.password of the "
        'brand\'s account (for a "script" app listed under that account at '
        "https://www.reddit.com/prefs/apps; not with two-factor authentication), or "
        "connectors[rd].credentials.refresh_token (from authorizing the app once as that "
        "account with duration=permanent and the scopes submit, read, identity and history)"
    )
    assert reddit.reply_unavailable() == expected
    with respx.mock:
        with pytest.raises(ReplyNotAllowed) as caught:
            reddit.reply(ReplyTarget(external_id=BILLING, platform="reddit"), TEXT, key="k")
        assert str(caught.value) == expected
        assert respx.calls.call_count == 0
    assert reply_connector(**PASSWORD_GRANT).reply_unavailable() is None
    assert reply_connector(refresh_token=REFRESH).reply_unavailable() is None


@pytest.mark.parametrize(
    ("name", "wait"), [("comment_ratelimit.json", 300.0), ("comment_ratelimit_old.json", 9.0)]
)
@respx.mock
def test_ratelimit_in_json_errors_is_rate_limited_with_the_wait(name: str, wait: float) -> None:
    respx.post(TOKEN_URL).mock(return_value=user_token())
    comment = respx.post(COMMENT).mock(return_value=ok(name))
    with pytest.raises(RateLimitedError) as caught:
        reply_connector(**PASSWORD_GRANT).reply(billing(), TEXT, key="k")
    assert caught.value.retry_after == wait
    assert caught.value.uncertain is False
    assert "RATELIMIT: " in str(caught.value) and "nothing was posted" in str(caught.value)
    assert comment.call_count == 1


@pytest.mark.parametrize(
    ("name", "because"),
    [
        (
            "comment_thread_locked.json",
            "because moderators locked the thread to new comments "
            "(THREAD_LOCKED: Comments are locked.)",
        ),
        (
            "comment_deleted.json",
            "because the comment was deleted (DELETED_COMMENT: that comment has been deleted)",
        ),
        (
            "comment_too_old.json",
            "because the post is archived and takes no comments any more "
            "(TOO_OLD: that's a piece of history now; it's too late to reply to it)",
        ),
    ],
)
@respx.mock
def test_locked_deleted_or_archived_targets_are_not_allowed(name: str, because: str) -> None:
    respx.post(TOKEN_URL).mock(return_value=user_token())
    respx.post(COMMENT).mock(return_value=ok(name))
    with pytest.raises(ReplyNotAllowed) as caught:
        reply_connector(**PASSWORD_GRANT).reply(billing(), TEXT, key="k")
    assert (
        str(caught.value) == f"Reddit refused the reply to {BILLING} {because}; nothing was posted"
    )
    assert caught.value.uncertain is False


@respx.mock
def test_another_json_error_is_permanent() -> None:
    respx.post(TOKEN_URL).mock(return_value=user_token())
    respx.post(COMMENT).mock(
        return_value=httpx.Response(
            200, json={"json": {"errors": [["NO_THING_ID", "id not specified", "parent"]]}}
        )
    )
    with pytest.raises(PermanentError) as caught:
        reply_connector(**PASSWORD_GRANT).reply(billing(), TEXT, key="k")
    assert (
        str(caught.value)
        == f"rd: Reddit refused the comment on {BILLING} (NO_THING_ID: id not specified)"
    )


@respx.mock
def test_a_refused_password_names_the_credentials_and_posts_nothing() -> None:
    respx.post(TOKEN_URL).mock(
        return_value=httpx.Response(200, json=fixture("token_invalid_grant.json"))
    )
    comment = respx.post(COMMENT).mock(return_value=ok("comment_created.json"))
    with pytest.raises(AuthError) as caught:
        reply_connector(**PASSWORD_GRANT).reply(billing(), TEXT, key="k")
    message = str(caught.value)
    assert "invalid_grant" in message
    assert (
        "connectors[rd].credentials.username and connectors[rd].credentials.password (with "
        "connectors[rd].credentials.client_id and client_secret) were refused by Reddit's token "
        "endpoint" in message
    )
    assert comment.call_count == 0


@respx.mock
def test_a_401_on_the_comment_fetches_a_new_token_and_sends_once_more() -> None:
    token = respx.post(TOKEN_URL).mock(
        side_effect=[user_token(), user_token("user_token_refreshed.json")]
    )
    comment = respx.post(COMMENT).mock(
        side_effect=[
            httpx.Response(401, json={"message": "Unauthorized", "error": 401}),
            ok("comment_created.json"),
        ]
    )
    assert reply_connector(**PASSWORD_GRANT).reply(billing(), TEXT, key="k") == SENT
    assert token.call_count == 2
    assert [c.request.headers["Authorization"] for c in comment.calls] == [
        f"bearer {fixture('user_token.json')['access_token']}",
        f"bearer {fixture('user_token_refreshed.json')['access_token']}",
    ]
    assert form(comment.calls[0].request) == form(comment.calls[1].request)


@respx.mock
def test_a_403_on_the_comment_explains_bans_and_scopes() -> None:
    respx.post(TOKEN_URL).mock(return_value=user_token())
    comment = respx.post(COMMENT).mock(
        return_value=httpx.Response(403, json={"message": "Forbidden", "error": 403})
    )
    with pytest.raises(AuthError) as caught:
        reply_connector(refresh_token=REFRESH).reply(billing(), TEXT, key="k")
    assert "connectors[rd].credentials.refresh_token" in str(caught.value)
    assert "banned from the subreddit, or the token missing a scope?" in str(caught.value)
    assert comment.call_count == 1


@respx.mock
def test_the_accounts_token_is_shared_by_the_process() -> None:
    token = respx.post(TOKEN_URL).mock(return_value=user_token())
    comment = respx.post(COMMENT).mock(return_value=ok("comment_created.json"))
    target = billing()
    reply_connector(**PASSWORD_GRANT).reply(target, TEXT, key="a")
    reply_connector(**PASSWORD_GRANT).reply(target, TEXT, key="b")
    assert token.call_count == 1 and comment.call_count == 2


@pytest.mark.parametrize("failure", [httpx.Response(502), httpx.ReadTimeout("read timed out")])
@respx.mock
def test_a_5xx_or_timeout_on_the_comment_is_uncertain_and_not_retried(
    failure: httpx.Response | Exception,
) -> None:
    respx.post(TOKEN_URL).mock(return_value=user_token())
    comment = respx.post(COMMENT).mock(side_effect=[failure, ok("comment_created.json")])
    sleeps = Sleeps()
    with pytest.raises(TransientError) as caught:
        reply_connector(sleeps, **PASSWORD_GRANT).reply(billing(), TEXT, key="k")
    assert caught.value.uncertain is True
    assert comment.call_count == 1 and sleeps == []


@respx.mock
def test_an_unreadable_200_is_uncertain() -> None:
    respx.post(TOKEN_URL).mock(return_value=user_token())
    respx.post(COMMENT).mock(return_value=httpx.Response(200, text="<html>ok</html>"))
    with pytest.raises(PayloadError) as caught:
        reply_connector(**PASSWORD_GRANT).reply(billing(), TEXT, key="k")
    assert caught.value.uncertain is True


@respx.mock
def test_find_reply_lists_the_accounts_newest_comments() -> None:
    respx.post(TOKEN_URL).mock(return_value=user_token())
    comments = respx.get(COMMENTS).mock(return_value=ok("user_comments.json"))
    reddit = reply_connector(**PASSWORD_GRANT)
    found = reddit.find_reply(billing(), "mention-3")
    assert found == SentReply(external_id=SENT.external_id, url=SENT.url, already_there=True)
    request = comments.calls.last.request
    assert params(request) == {"limit": "100", "sort": "new", "raw_json": "1"}
    assert (
        request.headers["Authorization"] == f"bearer {fixture('user_token.json')['access_token']}"
    )

    assert reddit.find_reply(billing(), "k", text=TEXT) is not None
    assert reddit.find_reply(billing(), "k", text="Something else entirely") is None
    # The account answered the Riga post, not the eSIM one.
    esim = ReplyTarget(external_id="t3_1gyo2aa", platform="reddit")
    assert reddit.find_reply(esim, "k") is None


@respx.mock
def test_find_reply_with_a_refresh_token_asks_who_the_account_is_once() -> None:
    respx.post(TOKEN_URL).mock(return_value=user_token("user_token_refreshed.json"))
    me = respx.get(ME).mock(return_value=ok("me.json"))
    comments = respx.get(COMMENTS).mock(return_value=ok("user_comments.json"))
    assert reply_connector(refresh_token=REFRESH).find_reply(billing(), "k") is not None
    assert reply_connector(refresh_token=REFRESH).find_reply(billing(), "k") is not None
    assert me.call_count == 1 and comments.call_count == 2


@respx.mock
def test_an_uncertain_comment_is_found_instead_of_posted_twice() -> None:
    target = billing()
    respx.post(TOKEN_URL).mock(return_value=user_token())
    comment = respx.post(COMMENT).mock(
        side_effect=[httpx.Response(504), ok("comment_created.json")]
    )
    respx.get(COMMENTS).mock(return_value=ok("user_comments.json"))
    reddit = reply_connector(**PASSWORD_GRANT)
    with pytest.raises(TransientError) as caught:
        reddit.reply(target, TEXT, key="mention-3")
    assert caught.value.uncertain is True
    # What the act stage does before a retry of an unknown outcome:
    found = reddit.find_reply(target, "mention-3")
    assert found is not None and found.already_there and found.external_id == SENT.external_id
    assert comment.call_count == 1


def test_reply_credential_problems() -> None:
    def check(**credentials: str) -> list[str]:
        return RedditConnector.check_settings(
            ConnectorSettings(
                name="rd",
                type="reddit",
                queries=["kestrel"],
                credentials={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **credentials},
            )
        )

    assert check(**PASSWORD_GRANT) == []
    assert check(refresh_token=REFRESH) == []
    assert check(refresh_token=REFRESH, username="kestrel_care") == []
    assert check(password=PASSWORD) == [
        "connectors[rd].credentials.username: required with credentials.password; expected the "
        "brand's Reddit user name, e.g. kestrel_care"
    ]
    assert check(username="kestrel_care") == [
        "connectors[rd].credentials.password: required with credentials.username (or set "
        "credentials.refresh_token instead); expected the password of the brand's Reddit account "
        "named in credentials.username"
    ]
    assert check(username="kestrel care", password=PASSWORD) == [
        "connectors[rd].credentials.username: 'kestrel care' is not a Reddit user name; expected "
        "the brand's Reddit user name, e.g. kestrel_care"
    ]

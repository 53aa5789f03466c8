"""The YouTube connector against API-shaped comment threads: mapping, paging, cursor, errors."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

import connectors.youtube
from connectors.base import (
    AuthError,
    PermanentError,
    RateLimitedError,
    ReplyNotAllowed,
    SentReply,
    TransientError,
)
from connectors.youtube import YouTubeConnector
from triage.config import ConnectorSettings
from triage.domain import Batch, ReplyTarget

FIXTURES = Path(__file__).parent.parent / "fixtures" / "youtube"
API = "https://www.googleapis.com/youtube/v3/commentThreads"
LOGGER = "triage.connectors.yt"
KEY = "AIzaSyD3x4mPl3K3yN0tR3alF0rT3st1ngOnly00"
CHANNEL = "UCkK3stre1MobileGd8PXw4A"
PAGE2_TOKEN = "Z2V0X25ld2VzdF9maXJzdC0tQ2dnSWdBUVZGN2ZST0JJRkNJZ2dHQUFTQlFpb0lCZ0FFZ1VJaVNBWUFDQUE="
T1 = "UgzQ7m3vR1bT8hXk2pN4AaABAg"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def ok(name: str) -> httpx.Response:
    return httpx.Response(200, json=load(name))


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def connector(sleep: Sleeps | None = None, **options: Any) -> YouTubeConnector:
    settings = ConnectorSettings(
        name="yt",
        type="youtube",
        options=options or {"channel_id": CHANNEL},
        credentials={"api_key": KEY},
    )
    return YouTubeConnector(settings, sleep=sleep if sleep is not None else Sleeps())


def params(request: httpx.Request) -> dict[str, str]:
    return dict(request.url.params)


@respx.mock
def test_first_page_maps_top_level_comments_and_included_replies() -> None:
    route = respx.get(API).mock(side_effect=[ok("threads_page1.json"), ok("threads_empty.json")])
    first, _ = connector().fetch(None)
    outage, sorry, same, plan = first.mentions

    assert params(route.calls[0].request) == {
        "part": "snippet,replies",
        "allThreadsRelatedToChannelId": CHANNEL,
        "maxResults": "100",
        "order": "time",
        "textFormat": "plainText",
        "key": KEY,
    }
    assert (outage.source, outage.platform) == ("yt", "youtube")
    assert outage.external_id == T1
    assert outage.text == "No mobile data in Riga since 6am and the status page says all good?"
    assert outage.url == f"https://www.youtube.com/watch?v=q3Xv9KpTz0E&lc={T1}"
    assert (outage.author_name, outage.author_handle) == ("@rigacommuter", "@rigacommuter")
    assert outage.created_at == datetime(2026, 11, 20, 14, 3, 11, tzinfo=UTC)
    assert outage.engagement == 12 + 2
    assert (outage.thread_id, outage.parent_id) == (T1, None)
    assert outage.raw["author_channel_id"] == "UCa1b2c3d4e5f6g7h8i9j0kA"
    assert outage.raw["updated_at"] == "2026-11-20T14:05:40Z"

    assert sorry.external_id == f"{T1}.AaBbCcDdEeF1"
    assert sorry.text == "Sorry about that! We're looking into the outage in Riga right now."
    assert sorry.url == f"https://www.youtube.com/watch?v=q3Xv9KpTz0E&lc={T1}.AaBbCcDdEeF1"
    assert (sorry.thread_id, sorry.parent_id, sorry.engagement) == (T1, T1, 3)
    assert same.author_handle == "@baltictech"

    assert plan.text == "Love the new plan, switched last week 👍"
    assert (plan.engagement, plan.parent_id) == (4, None)
    # More pages follow, so the cursor is not advanced yet.
    assert first.cursor is None


@respx.mock
def test_next_page_sends_the_token_and_the_cursor_moves_only_at_the_end() -> None:
    route = respx.get(API).mock(side_effect=[ok("threads_page1.json"), ok("threads_page2.json")])
    first, second = connector().fetch(None)
    assert params(route.calls[1].request)["pageToken"] == PAGE2_TOKEN
    assert "pageToken" not in params(route.calls[0].request)
    assert [m.external_id for m in second.mentions] == ["UgyHn4Tq8pWm1vZr6cB4AaABAg"]
    assert first.cursor is None
    # The newest top-level comment, not the newer reply: threads are ordered by top-level time.
    assert json.loads(second.cursor or "") == {f"channel:{CHANNEL}": "2026-11-20T14:03:11Z"}


@respx.mock
def test_empty_page_ends_the_walk_without_a_cursor() -> None:
    route = respx.get(API).mock(return_value=ok("threads_empty.json"))
    assert list(connector().fetch(None)) == [Batch(mentions=[], cursor=None)]
    assert route.call_count == 1


@respx.mock
def test_cursor_resume_stops_at_threads_already_seen() -> None:
    route = respx.get(API).mock(return_value=ok("threads_page1.json"))
    saved = json.dumps({f"channel:{CHANNEL}": "2026-11-20T09:41:26Z"})
    (batch,) = connector().fetch(saved)
    assert [m.external_id for m in batch.mentions] == [
        T1,
        f"{T1}.AaBbCcDdEeF1",
        f"{T1}.AaBbCcDdEeF2",
    ]
    # The old thread was reached, so page 2 is not fetched and the cursor advances.
    assert route.call_count == 1
    assert json.loads(batch.cursor or "") == {f"channel:{CHANNEL}": "2026-11-20T14:03:11Z"}


@respx.mock
def test_a_crash_mid_walk_keeps_the_old_cursor() -> None:
    saved = json.dumps({f"channel:{CHANNEL}": "2026-11-01T00:00:00Z"})
    respx.get(API).mock(
        side_effect=[ok("threads_page1.json"), httpx.Response(500, json={"error": {}})]
    )
    batches = connector().fetch(saved)
    first = next(batches)
    assert json.loads(first.cursor or "") == {f"channel:{CHANNEL}": "2026-11-01T00:00:00Z"}


@respx.mock
def test_max_pages_stops_without_moving_the_cursor() -> None:
    route = respx.get(API).mock(return_value=ok("threads_page1.json"))
    assert [b.cursor for b in connector(channel_id=CHANNEL, max_pages=1).fetch(None)] == [None]
    assert route.call_count == 1


@respx.mock
def test_video_ids_read_one_stream_each() -> None:
    route = respx.get(API).mock(side_effect=[ok("threads_page2.json"), ok("threads_empty.json")])
    batches = list(connector(video_ids=["q3Xv9KpTz0E", "Lm8cR2wYd4s"]).fetch(None))
    assert [params(c.request)["videoId"] for c in route.calls] == ["q3Xv9KpTz0E", "Lm8cR2wYd4s"]
    assert "allThreadsRelatedToChannelId" not in params(route.calls[0].request)
    assert json.loads(batches[-1].cursor or "") == {"video:q3Xv9KpTz0E": "2026-11-18T22:15:03Z"}


@respx.mock
@pytest.mark.parametrize("status", [429, 503])
def test_rate_limited_or_server_error_then_ok_retries(status: int) -> None:
    route = respx.get(API).mock(
        side_effect=[
            httpx.Response(status, json={"error": {"code": status, "message": "busy"}}),
            ok("threads_page2.json"),
        ]
    )
    sleeps = Sleeps()
    (batch,) = connector(sleeps).fetch(None)
    assert len(batch.mentions) == 1
    assert route.call_count == 2
    assert len(sleeps) == 1


@respx.mock
@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, load("error_key_invalid.json")),
        (403, load("error_forbidden.json")),
        (
            400,
            {
                "error": {
                    "code": 400,
                    "message": "Bad Request",
                    "errors": [
                        {"domain": "usageLimits", "reason": "keyInvalid", "message": "Bad Request"}
                    ],
                }
            },
        ),
    ],
)
def test_a_bad_api_key_is_an_auth_error_naming_the_credential(
    status: int, body: dict[str, Any]
) -> None:
    route = respx.get(API).mock(return_value=httpx.Response(status, json=body))
    with pytest.raises(AuthError) as caught:
        list(connector().fetch(None))
    assert route.call_count == 1
    assert caught.value.status == status
    assert "connectors[yt].credentials.api_key was refused" in str(caught.value)
    assert KEY not in str(caught.value)


@respx.mock
def test_quota_exceeded_backs_off_until_pacific_midnight(monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime(2026, 11, 24, 21, 30, tzinfo=UTC)
    monkeypatch.setattr(connectors.youtube, "utcnow", lambda: now)
    route = respx.get(API).mock(
        return_value=httpx.Response(403, json=load("error_quota_exceeded.json"))
    )
    with pytest.raises(RateLimitedError) as caught:
        list(connector().fetch(None))
    assert route.call_count == 1
    assert not isinstance(caught.value, AuthError)
    # 21:30 UTC is 13:30 PST; midnight PST is 08:00 UTC, 10.5 hours later.
    assert caught.value.retry_after == pytest.approx(10.5 * 3600)
    assert "daily quota is used up" in str(caught.value)


@respx.mock
def test_comments_disabled_skips_that_video_only(caplog: pytest.LogCaptureFixture) -> None:
    route = respx.get(API).mock(
        side_effect=[
            httpx.Response(403, json=load("error_comments_disabled.json")),
            ok("threads_page2.json"),
        ]
    )
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        batches = list(connector(video_ids=["Lm8cR2wYd4s", "q3Xv9KpTz0E"]).fetch(None))
    assert route.call_count == 2
    assert [len(b.mentions) for b in batches] == [1]
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        "skipped video:Lm8cR2wYd4s: comments are disabled on Lm8cR2wYd4s"
    ]


@respx.mock
def test_an_unknown_video_names_the_option() -> None:
    body = {
        "error": {
            "code": 404,
            "message": "The video identified by the videoId parameter could not be found.",
            "errors": [{"domain": "youtube.commentThread", "reason": "videoNotFound"}],
        }
    }
    respx.get(API).mock(return_value=httpx.Response(404, json=body))
    with pytest.raises(PermanentError, match=r"options\.video_ids: 'nope' was not found"):
        list(connector(video_ids=["nope"]).fetch(None))


@respx.mock
def test_malformed_threads_are_skipped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    body = load("threads_page2.json")
    good = body["items"][0]
    no_text = json.loads(json.dumps(good))
    no_text["id"] = "UgxNoTextAaABAg"
    no_text["snippet"]["topLevelComment"]["snippet"]["textOriginal"] = ""
    no_text["snippet"]["topLevelComment"]["snippet"]["textDisplay"] = ""
    body["items"] = [{"kind": "youtube#commentThread", "id": "UgxBrokenAaABAg"}, no_text, good]
    respx.get(API).mock(return_value=httpx.Response(200, json=body))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        (batch,) = connector().fetch(None)
    assert [m.external_id for m in batch.mentions] == [good["id"]]
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        "skipped thread id='UgxBrokenAaABAg': missing field 'snippet'",
        "skipped thread id='UgxNoTextAaABAg': comment UgyHn4Tq8pWm1vZr6cB4AaABAg has no text",
    ]


def test_an_unreadable_cursor_starts_from_scratch(caplog: pytest.LogCaptureFixture) -> None:
    with respx.mock:
        route = respx.get(API).mock(return_value=ok("threads_empty.json"))
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            list(connector().fetch("not json"))
    assert route.call_count == 1
    assert "ignoring unreadable cursor" in caplog.text


def test_check_settings_wants_exactly_one_target_and_a_key() -> None:
    def check(credentials: dict[str, str] | None = None, **options: Any) -> list[str]:
        return YouTubeConnector.check_settings(
            ConnectorSettings(
                name="yt", type="youtube", options=options, credentials=credentials or {}
            )
        )

    key = {"api_key": KEY}
    assert check(key, channel_id=CHANNEL) == []
    assert check(key, video_ids=["q3Xv9KpTz0E"], max_pages=2) == []
    assert check() == [
        "connectors[yt].credentials.api_key: required credential is missing; expected a YouTube "
        "Data API v3 key from a Google Cloud project with the API enabled",
        "connectors[yt].options: set exactly one of channel_id (the channel's id, starting with "
        "UC, e.g. UC_x5XG1OV2P6uZZ5FSM9Ttw) or video_ids "
        '(a list of video ids, e.g. ["dQw4w9WgXcQ"])',
    ]
    assert check(key, channel_id=CHANNEL, video_ids=["q3Xv9KpTz0E"]) == [
        "connectors[yt].options: channel_id and video_ids are both set; keep only one "
        "(channel_id already covers every video of the channel)"
    ]
    assert check(key, video_ids="q3Xv9KpTz0E") == [
        "connectors[yt].options.video_ids: 'q3Xv9KpTz0E' is not valid; "
        'expected a list of video ids, e.g. ["dQw4w9WgXcQ"]'
    ]
    assert check(key, channel_id=" ") == [
        "connectors[yt].options.channel_id: ' ' is not valid; "
        "expected the channel's id, starting with UC, e.g. UC_x5XG1OV2P6uZZ5FSM9Ttw"
    ]
    assert check(key, channel_id=CHANNEL, max_pages=0)[0].startswith(
        "connectors[yt].options.max_pages: 0 is not valid"
    )


# --------------------------------------------------------------------------- replies

COMMENTS = "https://www.googleapis.com/youtube/v3/comments"
TOKEN_URL = "https://oauth2.googleapis.com/token"
REPLY_TEXT = (
    "Sorry about that! There is an outage in Riga since 05:40; "
    "updates at https://status.kestrel.example"
)
REPLY_CREDENTIALS = {
    "client_id": "1234.apps.googleusercontent.com",
    "client_secret": "s3cr3t",
    "refresh_token": "1//0gK3stre1",
}


def replying(**options: Any) -> YouTubeConnector:
    settings = ConnectorSettings(
        name="yt",
        type="youtube",
        options=options or {"channel_id": CHANNEL},
        credentials={"api_key": KEY, **REPLY_CREDENTIALS},
    )
    return YouTubeConnector(settings, sleep=Sleeps())


def outage_target() -> ReplyTarget:
    return ReplyTarget(
        external_id=T1,
        platform="youtube",
        thread_id=T1,
        raw={"video_id": "q3Xv9KpTz0E", "thread_id": T1},
    )


def token(value: str = "ya29.a0Af") -> httpx.Response:
    return httpx.Response(
        200, json={"access_token": value, "expires_in": 3599, "token_type": "Bearer"}
    )


@respx.mock
def test_reply_inserts_under_the_thread_as_the_channel() -> None:
    grant = respx.post(TOKEN_URL).mock(return_value=token())
    insert = respx.post(COMMENTS).mock(return_value=ok("comment_inserted.json"))
    sent = replying().reply(outage_target(), REPLY_TEXT, key="mention-3")

    reply_id = "UgzQ7m3vR1bT8hXk2pN4AaABAg.9zKb3xQmW1r9zKb4Lq2sT8"
    assert sent == SentReply(
        external_id=reply_id, url=f"https://www.youtube.com/watch?v=q3Xv9KpTz0E&lc={reply_id}"
    )
    request = insert.calls[0].request
    assert params(request) == {"part": "snippet"}
    assert request.headers["Authorization"] == "Bearer ya29.a0Af"
    assert json.loads(request.content) == {"snippet": {"parentId": T1, "textOriginal": REPLY_TEXT}}
    assert grant.call_count == 1


def test_reply_needs_the_oauth_credentials_and_says_which() -> None:
    with pytest.raises(ReplyNotAllowed, match=r"credentials\.client_id and .*refresh_token"):
        connector().reply(outage_target(), "hi", key="k")


@respx.mock
def test_an_expired_access_token_is_renewed_once() -> None:
    respx.post(TOKEN_URL).mock(side_effect=[token("old"), token("new")])
    insert = respx.post(COMMENTS).mock(
        side_effect=[
            httpx.Response(401, json={"error": {"code": 401}}),
            ok("comment_inserted.json"),
        ]
    )
    replying().reply(outage_target(), "Thanks!", key="k")
    assert [c.request.headers["Authorization"] for c in insert.calls] == [
        "Bearer old",
        "Bearer new",
    ]


@respx.mock
def test_comments_disabled_and_quota_are_explained() -> None:
    respx.post(TOKEN_URL).mock(return_value=token())
    respx.post(COMMENTS).mock(
        side_effect=[
            httpx.Response(403, json=load("error_comments_disabled.json")),
            httpx.Response(403, json=load("error_quota_exceeded.json")),
        ]
    )
    with pytest.raises(ReplyNotAllowed, match="commentsDisabled"):
        replying().reply(outage_target(), "hi", key="k")
    with pytest.raises(RateLimitedError, match="a reply costs 50 units") as quota:
        replying().reply(outage_target(), "hi", key="k")
    assert quota.value.retry_after and quota.value.retry_after > 0


@respx.mock
def test_a_5xx_on_insert_is_uncertain_and_find_reply_finds_the_channels_reply() -> None:
    respx.post(TOKEN_URL).mock(return_value=token())
    insert = respx.post(COMMENTS).mock(return_value=httpx.Response(503))
    with pytest.raises(TransientError) as raised:
        replying().reply(outage_target(), REPLY_TEXT, key="k")
    assert raised.value.uncertain and insert.call_count == 1

    other = {**load("comment_inserted.json"), "id": "someone-else"}
    other["snippet"] = {**other["snippet"], "authorChannelId": {"value": "UCsomeoneElse"}}
    listing = respx.get(COMMENTS).mock(
        return_value=httpx.Response(
            200,
            json={
                "kind": "youtube#commentListResponse",
                "items": [other, load("comment_inserted.json")],
            },
        )
    )
    found = replying().find_reply(outage_target(), "k", text=REPLY_TEXT)
    assert found is not None and found.already_there
    assert found.external_id.endswith("9zKb4Lq2sT8")
    assert params(listing.calls[0].request) == {
        "part": "snippet",
        "parentId": T1,
        "maxResults": "100",
        "textFormat": "plainText",
    }
    assert replying().find_reply(outage_target(), "k", text="another text") is None


@respx.mock
def test_without_a_channel_id_the_tokens_own_channel_is_the_brand() -> None:
    respx.post(TOKEN_URL).mock(return_value=token())
    mine = respx.get("https://www.googleapis.com/youtube/v3/channels").mock(
        return_value=httpx.Response(
            200, json={"items": [{"kind": "youtube#channel", "id": CHANNEL}]}
        )
    )
    respx.get(COMMENTS).mock(
        return_value=httpx.Response(200, json={"items": [load("comment_inserted.json")]})
    )
    found = replying(video_ids=["q3Xv9KpTz0E"]).find_reply(outage_target(), "k")
    assert found is not None
    assert params(mine.calls[0].request) == {"part": "id", "mine": "true"}

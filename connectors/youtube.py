"""Comments on the brand's YouTube videos, read through the YouTube Data API v3 with an API key.

One stream per run target: `options.channel_id` reads every video of the channel in one stream
(`commentThreads.list` with `allThreadsRelatedToChannelId`); `options.video_ids` reads one stream
per video (`videoId`). Each request is `GET /youtube/v3/commentThreads?part=snippet,replies&
maxResults=100&order=time&textFormat=plainText`, so threads arrive newest first, 100 a page.
A thread's top-level comment and the replies the API includes with it (at most a few; the full
list needs comments.list) become mentions; a reply's parent_id is its thread id.

Quota. commentThreads.list costs 1 unit per call and a project gets 10,000 units a day by default.
A run costs one unit per page, at most `max_pages` (default 5) per stream, so at most
streams x max_pages units; a quiet stream costs 1 unit a run. At the default 30-minute interval
that is 48 units a day per quiet stream and at most 240 per busy one. A 403 quotaExceeded is a
RateLimitedError whose retry_after reaches the next midnight Pacific time, when quota resets.

Cursor and crash safety. The cursor is `{stream: newest publishedAt seen}`, stream being
`channel:<id>` or `video:<id>`. A stream's walk stops at the first thread at or older than its
cursor. Because pages arrive newest first, the stream's cursor moves only when its walk finishes
(no next page, an empty page, or the cursor reached): every earlier page's Batch keeps the old
value, so a crash mid-walk re-reads the same pages and the store dedupes by external_id.

Replies: `comments.insert` (`POST /youtube/v3/comments?part=snippet` with snippet.parentId =
the thread's top-level comment id, since YouTube threads are one level deep, and
snippet.textOriginal), as the brand channel's Google account: an OAuth 2.0 access token from
`credentials.refresh_token` with `client_id`/`client_secret` (scope youtube.force-ssl); the API
key only reads. An insert costs 50 quota units, so 200 replies would use a whole default day.
YouTube has no idempotency key, so before an uncertain attempt is repeated `find_reply` lists the
thread's replies (`comments.list?parentId=`, 1 unit) for one by the brand channel with the text.

Known limits: a walk cut short by `max_pages` does not advance that stream's cursor (nothing is
skipped, but the next run starts from the top again); new replies to a thread older than the
cursor are not seen, since order=time sorts threads by their top-level comment.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, cast

import httpx

from connectors.base import (
    AuthError,
    Connector,
    ConnectorError,
    Page,
    PayloadError,
    PermanentError,
    RateLimitedError,
    ReplyNotAllowed,
    SentReply,
)
from connectors.google_auth import GoogleCaller
from connectors.reply import ReplyRules
from triage.clock import utcnow
from triage.config import ConnectorSettings
from triage.domain import NewMention, ReplyTarget
from triage.http import send

API_URL = "https://www.googleapis.com/youtube/v3/commentThreads"
COMMENTS_URL = "https://www.googleapis.com/youtube/v3/comments"
CHANNELS_URL = "https://www.googleapis.com/youtube/v3/channels"
REPLY_SCOPE_HINT = (
    "a refresh token of the brand channel's Google account with the "
    "https://www.googleapis.com/auth/youtube.force-ssl scope"
)
# Reasons a comment cannot be answered at all (not a credentials fault).
NOT_ALLOWED_REASONS = frozenset({"commentsDisabled", "parentCommentIsPrivate", "ineligibleAccount"})
WATCH_URL = "https://www.youtube.com/watch?v={video}&lc={comment}"
PAGE_SIZE = 100
# YouTube quota resets at midnight Pacific time; PST (UTC-8) is used all year, so in summer the
# wait is an hour longer than needed, which is harmless for a daily quota.
QUOTA_RESET_OFFSET = timedelta(hours=-8)
# Reasons that mean the API key (or its Google Cloud project) is at fault, not the request.
KEY_REASONS = frozenset(
    {
        "keyInvalid",
        "keyExpired",
        "forbidden",
        "accessNotConfigured",
        "ipRefererBlocked",
        "API_KEY_INVALID",
        "API_KEY_EXPIRED",
        "API_KEY_SERVICE_BLOCKED",
        "SERVICE_DISABLED",
    }
)


class CommentsDisabledError(ConnectorError):
    """The video (or channel) has comments turned off; its stream is skipped, not failed."""


class YouTubeConnector(Connector):
    """Comment threads on one channel's videos, or on a list of videos, newest first."""

    type = "youtube"
    platform = "youtube"
    optional_options = ("channel_id", "video_ids")
    required_credentials = ("api_key",)
    optional_credentials = ("client_id", "client_secret", "refresh_token")
    expected: ClassVar[Mapping[str, str]] = {
        "channel_id": "the channel's id, starting with UC, e.g. UC_x5XG1OV2P6uZZ5FSM9Ttw",
        "video_ids": 'a list of video ids, e.g. ["dQw4w9WgXcQ"]',
        "api_key": "a YouTube Data API v3 key from a Google Cloud project with the API enabled",
        "client_id": "the OAuth client id of the Google Cloud project (Credentials page)",
        "client_secret": "the OAuth client secret of that client",
        "refresh_token": REPLY_SCOPE_HINT,
    }
    reply_rules: ClassVar[ReplyRules | None] = ReplyRules(
        max_length=10_000,
        private_messages=False,
        note="the reply goes under the thread's first comment",
    )
    reply_credentials = ("client_id", "client_secret", "refresh_token")
    _caller: GoogleCaller | None = None
    _my_channel: str | None = None
    uses_queries = False
    default_interval = 30 * 60.0
    default_max_pages = 5

    @classmethod
    def check_settings(cls, settings: ConnectorSettings) -> list[str]:
        problems = super().check_settings(settings)
        prefix = f"connectors[{settings.name}].options"
        channel = settings.options.get("channel_id")
        videos = settings.options.get("video_ids")
        if channel is None and videos is None:
            problems.append(
                f"{prefix}: set exactly one of channel_id ({cls.expected['channel_id']}) "
                f"or video_ids ({cls.expected['video_ids']})"
            )
        elif channel is not None and videos is not None:
            problems.append(
                f"{prefix}: channel_id and video_ids are both set; keep only one "
                "(channel_id already covers every video of the channel)"
            )
        if channel is not None and not (isinstance(channel, str) and channel.strip()):
            problems.append(
                f"{prefix}.channel_id: {channel!r} is not valid; "
                f"expected {cls.expected['channel_id']}"
            )
        if videos is not None and not (
            isinstance(videos, list)
            and videos
            and all(isinstance(v, str) and v.strip() for v in videos)
        ):
            problems.append(
                f"{prefix}.video_ids: {videos!r} is not valid; expected {cls.expected['video_ids']}"
            )
        return problems

    @property
    def streams(self) -> list[tuple[str, str, str]]:
        """(cursor key, request parameter, id) for each stream this connector reads."""
        channel = self.options.get("channel_id")
        if channel:
            channel = channel.strip()
            return [(f"channel:{channel}", "allThreadsRelatedToChannelId", channel)]
        videos = dict.fromkeys(v.strip() for v in self.options.get("video_ids") or ())
        return [(f"video:{video}", "videoId", video) for video in videos]

    def pages(self, cursor: str | None) -> Iterator[Page]:
        """Every stream in turn, each up to `max_pages` pages; one Page per response."""
        state = {
            key: value
            for key, value in self.load_cursor(cursor).items()
            if isinstance(value, str) and _parse_time_or_none(value) is not None
        }
        for key, param, value in self.streams:
            try:
                yield from self._stream_pages(state, key, param, value)
            except CommentsDisabledError as exc:
                self.log.warning("skipped %s: %s", key, exc)

    def _stream_pages(
        self, state: dict[str, str], key: str, param: str, value: str
    ) -> Iterator[Page]:
        since = _parse_time_or_none(state.get(key))
        newest = since
        token: str | None = None
        requested: set[str] = set()
        for _ in range(self.max_pages):
            body = self._json(self.send(self._request(param, value, token)))
            threads = body["items"]
            fresh = [t for t in threads if not _is_old(t, since)]
            reached_cursor = len(fresh) < len(threads)
            mentions: list[NewMention] = []
            for thread in fresh:
                mentions += self.map_items([thread], self._top_level, label=_thread_label)
                thread_id = str(thread.get("id")) if isinstance(thread, Mapping) else ""
                replies = _replies(thread) if thread_id else []
                mentions += self.map_items(
                    replies,
                    lambda reply, parent=thread_id: self._comment(reply, parent, parent, 0),
                    label=_comment_label,
                )
            # Only top-level times: threads are ordered by them, a reply can be newer than a
            # thread the API has not listed yet.
            for mention in mentions:
                stamp = mention.created_at
                if mention.parent_id is None and stamp and (newest is None or stamp > newest):
                    newest = stamp
            token = body.get("nextPageToken") or None
            done = reached_cursor or not threads or not token
            if done and newest is not None:
                state[key] = _format_time(newest)
            yield Page(items=mentions, cursor=self.dump_cursor(state) if state else None)
            if done:
                return
            if token in requested:
                raise PayloadError(
                    f"{self.name}: YouTube returned page token {token!r} again; "
                    "stopping instead of fetching the same pages forever"
                )
            requested.add(token)
        self.log.info(
            "%s: stopped after %d pages (options.max_pages); the rest is fetched on the next run",
            key,
            self.max_pages,
        )

    def _request(self, param: str, value: str, token: str | None) -> httpx.Request:
        params = {
            "part": "snippet,replies",
            param: value,
            "maxResults": str(PAGE_SIZE),
            "order": "time",
            "textFormat": "plainText",
            "key": self.credentials["api_key"],
        }
        if token:
            params["pageToken"] = token
        return self.client.build_request("GET", API_URL, params=params)

    def send(self, request: httpx.Request) -> httpx.Response:
        """Send through the retry policy, then read Google's error reason to say what failed."""
        recorder = _Recorder(self.client)
        try:
            return send(
                cast(httpx.Client, recorder),
                request,
                policy=self.retry_policy,
                sleep=self._sleep,
                connector=self.name,
            )
        except (AuthError, PermanentError) as exc:
            raise self._google_error(exc, request, recorder.last) from exc

    def post_reply(self, target: ReplyTarget, text: str, *, key: str) -> SentReply:
        parent = target.thread_id or str(target.raw.get("thread_id") or target.external_id)
        body = {"snippet": {"parentId": parent, "textOriginal": text}}
        response = self._as_channel(
            "POST", COMMENTS_URL, params={"part": "snippet"}, json=body, once=True
        )
        comment = _object(response, self.name)
        comment_id = comment.get("id")
        if not isinstance(comment_id, str) or not comment_id:
            raise PayloadError(
                f"{self.name}: comments.insert answered without an id", uncertain=True
            )
        video = target.raw.get("video_id")
        url = WATCH_URL.format(video=video, comment=comment_id) if video else target.url
        return SentReply(external_id=comment_id, url=url)

    def find_reply(
        self, target: ReplyTarget, key: str, text: str | None = None
    ) -> SentReply | None:
        """The brand channel's reply in the thread (with `text`, when given), if any."""
        parent = target.thread_id or str(target.raw.get("thread_id") or target.external_id)
        mine = self._brand_channel()
        response = self._as_channel(
            "GET",
            COMMENTS_URL,
            params={
                "part": "snippet",
                "parentId": parent,
                "maxResults": "100",
                "textFormat": "plainText",
            },
        )
        video = target.raw.get("video_id")
        for item in _object(response, self.name).get("items") or []:
            snippet = item.get("snippet") if isinstance(item, Mapping) else None
            if not isinstance(snippet, Mapping):
                continue
            author = snippet.get("authorChannelId")
            author_id = author.get("value") if isinstance(author, Mapping) else None
            said = str(snippet.get("textOriginal") or snippet.get("textDisplay") or "")
            if author_id == mine and (text is None or said.strip() == text.strip()):
                comment_id = str(item.get("id"))
                url = WATCH_URL.format(video=video, comment=comment_id) if video else None
                return SentReply(external_id=comment_id, url=url, already_there=True)
        return None

    def _brand_channel(self) -> str:
        """The brand's channel id: options.channel_id, else the token's own channel."""
        configured = self.options.get("channel_id")
        if isinstance(configured, str) and configured.strip():
            return configured.strip()
        if self._my_channel is None:
            response = self._as_channel("GET", CHANNELS_URL, params={"part": "id", "mine": "true"})
            items = _object(response, self.name).get("items") or []
            if not items or not isinstance(items[0], Mapping) or not items[0].get("id"):
                raise AuthError(
                    f"connectors[{self.name}].credentials.refresh_token belongs to a Google "
                    "account without a YouTube channel; expected " + REPLY_SCOPE_HINT
                )
            self._my_channel = str(items[0]["id"])
        return self._my_channel

    def _as_channel(
        self, method: str, url: str, *, once: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """A call as the brand channel's Google account (a refused token is renewed once)."""
        if self._caller is None:
            self._caller = GoogleCaller.with_refresh_token(self)
        try:
            return self._caller.call(method, url, once=once, **kwargs)
        except (AuthError, PermanentError) as exc:
            raise self._reply_error(exc) from exc

    def _reply_error(self, exc: ConnectorError) -> ConnectorError:
        reasons = _body_reasons(exc.body)
        if "quotaExceeded" in reasons or "dailyLimitExceeded" in reasons:
            return RateLimitedError(
                f"{self.name}: the YouTube Data API daily quota is used up (a reply costs 50 "
                "units); it resets at midnight Pacific time",
                status=exc.status,
                retry_after=_until_quota_reset(utcnow()),
            )
        if reasons & NOT_ALLOWED_REASONS or exc.status == 404:
            why = ", ".join(sorted(reasons & NOT_ALLOWED_REASONS)) or "the comment is gone"
            return ReplyNotAllowed(f"YouTube does not take a reply here ({why})", status=exc.status)
        if isinstance(exc, AuthError):
            return AuthError(
                f"{exc}; connectors[{self.name}].credentials.refresh_token (with client_id and "
                f"client_secret) was refused; expected {REPLY_SCOPE_HINT}",
                status=exc.status,
                body=exc.body,
            )
        return exc

    def _google_error(
        self, exc: ConnectorError, request: httpx.Request, response: httpx.Response | None
    ) -> ConnectorError:
        reasons = _reasons(response)
        target = request.url.params.get("videoId") or request.url.params.get(
            "allThreadsRelatedToChannelId"
        )
        if "quotaExceeded" in reasons or "dailyLimitExceeded" in reasons:
            wait = _until_quota_reset(utcnow())
            return RateLimitedError(
                f"{self.name}: the YouTube Data API daily quota is used up; it resets at "
                "midnight Pacific time. Lower options.max_pages, lengthen the interval, or ask "
                "Google for more quota",
                status=exc.status,
                retry_after=wait,
            )
        if "commentsDisabled" in reasons:
            return CommentsDisabledError(f"comments are disabled on {target}", status=exc.status)
        if reasons & KEY_REASONS or exc.status in (401, 403):
            return AuthError(
                f"{exc}; connectors[{self.name}].credentials.api_key was refused: it must be a "
                "valid YouTube Data API v3 key of a project with the API enabled, without "
                "referrer or IP restrictions that exclude this server",
                status=exc.status,
                retry_after=exc.retry_after,
            )
        if exc.status == 404:
            option = "video_ids" if request.url.params.get("videoId") else "channel_id"
            return PermanentError(
                f"{exc}; check connectors[{self.name}].options.{option}: {target!r} was not found",
                status=exc.status,
            )
        return exc

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError as exc:
            raise PayloadError(f"{self.name}: YouTube did not return JSON ({exc})") from exc
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise PayloadError(f"{self.name}: YouTube returned no list of comment threads")
        return body

    def _top_level(self, thread: Mapping[str, Any]) -> NewMention:
        if not isinstance(thread, Mapping):
            raise PayloadError(f"thread is a {type(thread).__name__}, not an object")
        thread_id = str(thread["id"])
        snippet = thread["snippet"]
        replies = _count(snippet.get("totalReplyCount"))
        return self._comment(snippet["topLevelComment"], thread_id, None, replies)

    def _comment(
        self, comment: Mapping[str, Any], thread_id: str, parent_id: str | None, replies: int
    ) -> NewMention:
        comment_id = str(comment["id"])
        snippet = comment["snippet"]
        text = str(snippet.get("textOriginal") or snippet.get("textDisplay") or "").strip()
        if not text:
            raise PayloadError(f"comment {comment_id} has no text")
        video = snippet.get("videoId")
        author = str(snippet.get("authorDisplayName") or "").strip() or None
        channel = snippet.get("authorChannelId")
        return NewMention(
            source=self.name,
            external_id=comment_id,
            platform=self.platform,
            text=text,
            url=WATCH_URL.format(video=video, comment=comment_id) if video else None,
            author_name=author,
            author_handle=author,
            created_at=_parse_time(snippet["publishedAt"]),
            engagement=_count(snippet.get("likeCount")) + replies,
            thread_id=thread_id,
            parent_id=parent_id,
            raw={
                "comment_id": comment_id,
                "thread_id": thread_id,
                "video_id": video,
                "channel_id": snippet.get("channelId"),
                "author_channel_id": channel.get("value") if isinstance(channel, Mapping) else None,
                "author_channel_url": snippet.get("authorChannelUrl"),
                "text_display": snippet.get("textDisplay"),
                "like_count": snippet.get("likeCount"),
                "total_reply_count": replies if parent_id is None else None,
                "published_at": snippet.get("publishedAt"),
                "updated_at": snippet.get("updatedAt"),
            },
        )


class _Recorder:
    """A client stand-in for triage.http.send that keeps the last response, for its error body."""

    def __init__(self, client: httpx.Client):
        self._client = client
        self.last: httpx.Response | None = None

    def send(self, request: httpx.Request) -> httpx.Response:
        self.last = self._client.send(request)
        return self.last


def _body_reasons(body: str | None) -> set[str]:
    """The reasons of a Google JSON error body kept on an error."""
    try:
        data = json.loads(body or "")
    except ValueError:
        return set()
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return set()
    items = [*(error.get("errors") or []), *(error.get("details") or [])]
    return {i["reason"] for i in items if isinstance(i, dict) and isinstance(i.get("reason"), str)}


def _object(response: httpx.Response, name: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise PayloadError(f"{name}: YouTube did not return JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise PayloadError(f"{name}: YouTube returned a {type(body).__name__}, not an object")
    return body


def _reasons(response: httpx.Response | None) -> set[str]:
    """The `reason`s of a Google JSON error body: errors[] (v3 style) and details[] (newer)."""
    try:
        body = response.json() if response is not None else None
    except ValueError:
        return set()
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return set()
    items = [*(error.get("errors") or []), *(error.get("details") or [])]
    return {
        item["reason"]
        for item in items
        if isinstance(item, dict) and isinstance(item.get("reason"), str)
    }


def _until_quota_reset(now: datetime) -> float:
    """Seconds from `now` to the next midnight Pacific (standard) time."""
    pacific = now.astimezone(UTC) + QUOTA_RESET_OFFSET
    midnight = (pacific + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - pacific).total_seconds()


def _is_old(thread: Any, since: datetime | None) -> bool:
    """Whether a thread's top-level comment is at or before the cursor."""
    if since is None or not isinstance(thread, Mapping):
        return False
    try:
        published = thread["snippet"]["topLevelComment"]["snippet"]["publishedAt"]
    except (KeyError, TypeError):
        return False
    stamp = _parse_time_or_none(published)
    return stamp is not None and stamp <= since


def _parse_time(value: Any) -> datetime:
    stamp = _parse_time_or_none(value)
    if stamp is None:
        raise PayloadError(f"publishedAt {value!r} is not a timestamp")
    return stamp


def _parse_time_or_none(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _format_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _count(value: Any) -> int:
    return max(0, value) if isinstance(value, int) and not isinstance(value, bool) else 0


def _replies(thread: Any) -> list[Any]:
    """The replies the API included with a thread (a few at most), or none."""
    replies = thread.get("replies") if isinstance(thread, Mapping) else None
    comments = replies.get("comments") if isinstance(replies, Mapping) else None
    return list(comments) if isinstance(comments, list) else []


def _comment_label(comment: Any) -> str | None:
    if isinstance(comment, Mapping) and comment.get("id") not in (None, ""):
        return f"reply id={comment['id']!r}"
    return None


def _thread_label(thread: Any) -> str | None:
    if isinstance(thread, Mapping) and thread.get("id") not in (None, ""):
        return f"thread id={thread['id']!r}"
    return None

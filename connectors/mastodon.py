"""Mentions of the brand's Mastodon account, read from its notifications on any instance.

One request per page: `GET {instance}/api/v1/notifications?types[]=mention&limit=40`, sent with
the access token as a bearer token (scope read:notifications). The API returns notifications
newest first; the `Link` header's `rel="next"` URL carries the `max_id` of the next, older page.

Cursor and crash safety. The cursor is the id of the newest notification seen, kept as
`{"since_id": "<id>"}`. A run asks for `since_id=<cursor>` and walks older pages through
`max_id`; Mastodon's next link does not repeat `since_id`, so every request of a run is built
here with the run's `since_id` and the next link's `max_id` (otherwise paging would run on
past the cursor into the account's whole history). Because pages arrive newest first, saving the
newest id after the first page would make a crash on page 2 skip pages 2..n for good: the next
run would ask only for notifications newer than page 1's top. So every page but the last keeps
the cursor unchanged and carries the run's high-water mark forward in its page token; only the
last page of the walk (no next link, or an empty page) records it. A crash mid-walk therefore
re-reads the same pages next run, and the store dedupes by (source, external_id).

Known limit: if a walk is cut short by `options.max_pages` (default 20 pages, 800 mentions per
run), the cursor is not advanced either, so nothing is skipped silently but the next run starts
from the top again; a backlog deeper than max_pages x 40 mentions between two runs is logged by
the base and its oldest part is not reached. Raise `max_pages` (or shorten the interval) for an
account that busy.

Rate limits: Mastodon sends `X-RateLimit-Limit/-Remaining/-Reset` (reset as an ISO timestamp);
triage.http's RATE_LIMIT_HEADERS reads them (and Retry-After) for a 429, and this connector logs
when few calls are left.

Hashtags (`options.hashtags`): each tag's public timeline, `GET {instance}/api/v1/timelines/tag/
{tag}` with since_id and Link-header paging, after the notifications. Each tag has its own mark
in the cursor (`{"since_id": ..., "tags": {tag: id}}`) that moves only when the tag's walk ends.
The instance's federated view decides what a tag shows: posts from servers it does not know
are missing.

Replies: `POST {instance}/api/v1/statuses` with `status`, `in_reply_to_id` and an
`Idempotency-Key` header (the reply's key): Mastodon keeps the key for an hour and answers a
repeat with the status it already made. That guard is not trusted alone (a server may ignore
the header, and a retry may come after the hour): before an attempt that may have gone out is
sent again, the post's thread (`GET /api/v1/statuses/:id/context`) is searched for a reply by
the brand's account (`GET /api/v1/accounts/verify_credentials`); one found there counts as
sent. The token needs write:statuses too (and read:accounts and read:statuses for that
look-up). The reply starts with the author's @name (added when missing, and counted in the 500
characters) or they are not notified; it keeps the visibility of a private or direct mention,
so a private conversation stays private, and is public otherwise
(`options.reply_visibility = "unlisted"` keeps replies off the public timelines).
`options.max_characters` sets the limit of an instance that allows more than 500.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import parse_qs, quote, urlsplit

import httpx

from connectors.base import (
    AuthError,
    Connector,
    Page,
    PayloadError,
    PermanentError,
    ReplyNotAllowed,
    SentReply,
)
from connectors.reply import LengthUnit, ReplyRules
from connectors.rss import html_to_text
from triage.config import ConnectorSettings
from triage.domain import NewMention, ReplyTarget

PAGE_SIZE = 40
NOTIFICATIONS_PATH = "/api/v1/notifications"
STATUSES_PATH = "/api/v1/statuses"
ACCOUNT_PATH = "/api/v1/accounts/verify_credentials"
TAG_PATH = "/api/v1/timelines/tag/"
DEFAULT_MAX_CHARACTERS = 500
REPLY_VISIBILITIES = ("public", "unlisted")
# A reply to these stays as narrow as the mention it answers.
PRIVATE_VISIBILITIES = ("private", "direct")
# Below this many calls left in the window, say so in the log.
LOW_REMAINING = 20


class MastodonConnector(Connector):
    """Mention notifications of one Mastodon account, on the instance it lives on."""

    type = "mastodon"
    platform = "mastodon"
    required_options = ("instance",)
    required_credentials = ("access_token",)
    optional_options = ("max_characters", "reply_visibility", "hashtags")
    expected: ClassVar[Mapping[str, str]] = {
        "instance": "the https:// address of the account's instance, e.g. https://mastodon.social",
        "access_token": "an access token of the brand's account with the read:notifications "
        "scope (and write:statuses, read:accounts and read:statuses to reply)",
        "max_characters": "the instance's post length limit, a whole number (default 500)",
        "reply_visibility": 'one of "public" (default) or "unlisted"',
        "hashtags": 'a list of hashtags without "#", e.g. ["kestrel", "KestrelDown"]',
    }
    uses_queries = False
    default_interval = 5 * 60.0
    reply_rules: ClassVar[ReplyRules | None] = ReplyRules(
        max_length=DEFAULT_MAX_CHARACTERS,
        unit=LengthUnit.MASTODON,
        note="the reply starts with the author's @name, so they are notified",
    )
    _top: str | None = None

    def __init__(self, settings: ConnectorSettings, **kwargs: Any):
        super().__init__(settings, **kwargs)
        limit = self.options.get("max_characters")
        if limit is not None and self.reply_rules is not None:
            self.reply_rules = replace(self.reply_rules, max_length=int(limit))  # type: ignore[misc]

    @classmethod
    def check_settings(cls, settings: ConnectorSettings) -> list[str]:
        problems = super().check_settings(settings) + cls.check_https_option(settings, "instance")
        prefix = f"connectors[{settings.name}].options"
        limit = settings.options.get("max_characters")
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            problems.append(
                f"{prefix}.max_characters: {limit!r} is not valid; "
                f"expected {cls.expected['max_characters']}"
            )
        tags = settings.options.get("hashtags")
        if tags is not None and not (
            isinstance(tags, list) and all(isinstance(t, str) and t.strip("# ") for t in tags)
        ):
            problems.append(
                f"{prefix}.hashtags: {tags!r} is not valid; expected {cls.expected['hashtags']}"
            )
        visibility = settings.options.get("reply_visibility")
        if visibility is not None and visibility not in REPLY_VISIBILITIES:
            problems.append(
                f"{prefix}.reply_visibility: {visibility!r} is not valid; "
                f"expected {cls.expected['reply_visibility']}"
            )
        return problems

    def check_reply(self, target: ReplyTarget, text: str) -> list[str]:
        """The rules apply to the text as it goes out, @name included."""
        if not text.strip():
            return ["the reply is empty"]
        return super().check_reply(target, _addressed(target, text))

    def post_reply(self, target: ReplyTarget, text: str, *, key: str) -> SentReply:
        visibility = str(target.raw.get("visibility") or "public")
        if visibility not in PRIVATE_VISIBILITIES:
            visibility = str(self.options.get("reply_visibility", "public"))
        body: dict[str, Any] = {
            "status": _addressed(target, text),
            "in_reply_to_id": target.external_id,
            "visibility": visibility,
        }
        if target.raw.get("language"):
            body["language"] = target.raw["language"]
        request = self.client.build_request(
            "POST",
            self.instance + STATUSES_PATH,
            json=body,
            headers={
                "Authorization": f"Bearer {self.credentials['access_token']}",
                "Idempotency-Key": key,
            },
        )
        try:
            response = self.send_once(request)
        except AuthError as exc:
            raise AuthError(
                f"{exc}; connectors[{self.name}].credentials.access_token may not post: it needs "
                "the write:statuses scope",
                status=exc.status,
                body=exc.body,
            ) from exc
        except PermanentError as exc:
            if exc.status == 404:
                raise ReplyNotAllowed(
                    "the post is gone (deleted, or no longer visible to the brand's account)",
                    status=404,
                ) from exc
            if exc.status == 422:
                raise ReplyNotAllowed(
                    f"{self.instance} refused the reply: {_error_text(exc.body)}", status=422
                ) from exc
            raise
        status = response.json()
        if not isinstance(status, Mapping) or not status.get("id"):
            raise PayloadError(
                f"{self.instance} answered the reply without a status id", uncertain=True
            )
        return SentReply(external_id=str(status["id"]), url=status.get("url") or status.get("uri"))

    def find_reply(
        self, target: ReplyTarget, key: str, text: str | None = None
    ) -> SentReply | None:
        """The brand account's reply to the target in its thread (the one with `text` first)."""
        me = self._get_object(self.instance + ACCOUNT_PATH, "the brand's account")
        context = self._get_object(
            f"{self.instance}{STATUSES_PATH}/{quote(target.external_id, safe='')}/context",
            "the post's thread",
        )
        descendants = context.get("descendants")
        ours = [
            status
            for status in (descendants if isinstance(descendants, list) else [])
            if isinstance(status, Mapping)
            and str(status.get("in_reply_to_id")) == target.external_id
            and isinstance(status.get("account"), Mapping)
            and str(status["account"].get("id")) == str(me.get("id"))
            and status.get("id")
        ]
        if not ours:
            return None
        # Any reply of ours answers the mention; the one with this text is the likeliest retry.
        wanted = _plain(_addressed(target, text)) if text else None
        found = next(
            (s for s in ours if _plain(html_to_text(str(s.get("content") or ""))) == wanted),
            ours[0],
        )
        return SentReply(
            external_id=str(found["id"]),
            url=found.get("url") or found.get("uri"),
            already_there=True,
        )

    def _get_object(self, url: str, what: str) -> Mapping[str, Any]:
        response = self.send(
            self.client.build_request(
                "GET", url, headers={"Authorization": f"Bearer {self.credentials['access_token']}"}
            )
        )
        try:
            body = response.json()
        except ValueError as exc:
            raise PayloadError(f"{self.name}: {what} is not JSON ({exc})") from exc
        if not isinstance(body, Mapping):
            raise PayloadError(f"{self.name}: {what} is not a JSON object")
        return body

    @property
    def instance(self) -> str:
        return str(self.options["instance"]).strip().rstrip("/")

    def pages(self, cursor: str | None) -> Iterator[Page]:
        """Mention notifications (the base's page loop), then each hashtag's timeline."""
        last = cursor
        for page in super().pages(cursor):
            last = page.cursor or last
            yield page
        for tag in self.hashtags:
            for page in self._tag_pages(tag, last):
                last = page.cursor or last
                yield page

    @property
    def hashtags(self) -> list[str]:
        tags = self.options.get("hashtags") or []
        return list(dict.fromkeys(str(tag).strip().lstrip("#") for tag in tags if str(tag).strip()))

    def _tag_pages(self, tag: str, cursor: str | None) -> Iterator[Page]:
        """A hashtag's public timeline, newest first, down to the tag's mark; crash-safe."""
        state = self.load_cursor(cursor)
        marks = dict(state.get("tags") or {})
        since = marks.get(tag)
        top: str | None = None
        max_id: str | None = None
        for _ in range(self.max_pages):
            params: list[tuple[str, str]] = [("limit", str(PAGE_SIZE))]
            if since:
                params.append(("since_id", str(since)))
            if max_id:
                params.append(("max_id", max_id))
            response = self.send(
                self.client.build_request(
                    "GET",
                    f"{self.instance}{TAG_PATH}{quote(tag, safe='')}",
                    params=params,
                    headers={"Authorization": f"Bearer {self.credentials['access_token']}"},
                )
            )
            self._log_rate_limit(response)
            try:
                statuses = response.json()
            except ValueError as exc:
                raise PayloadError(f"{self.name}: the #{tag} timeline is not JSON ({exc})") from exc
            if not isinstance(statuses, list):
                raise PayloadError(f"{self.name}: the #{tag} timeline is not a list")
            mentions = self.map_items(
                statuses, lambda status: self._status_mention(status, status["account"])
            )
            top = _newest(top, *(_notification_id(status) for status in statuses))
            max_id = _next_max_id(response)
            if not statuses or not max_id:
                newest = _newest(since, top)
                if newest:
                    marks[tag] = newest
                yield Page(items=mentions, cursor=self.dump_cursor({**state, "tags": marks}))
                return
            yield Page(items=mentions, cursor=cursor)
        self.log.info(
            "#%s: stopped after %d pages (options.max_pages); the mark stays, so the next run "
            "reads these pages again",
            tag,
            self.max_pages,
        )

    def build_request(self, cursor: str | None, page_token: str | None) -> httpx.Request | None:
        params: list[tuple[str, str]] = [("types[]", "mention"), ("limit", str(PAGE_SIZE))]
        since_id = self._since_id(cursor)
        if since_id:
            params.append(("since_id", since_id))
        # The token of a later page: its max_id, and the newest id the pages before it held.
        token = self.load_cursor(page_token)
        self._top = str(token["top"]) if token.get("top") else None
        if token.get("max_id"):
            params.append(("max_id", str(token["max_id"])))
        return self.client.build_request(
            "GET",
            self.instance + NOTIFICATIONS_PATH,
            params=params,
            headers={
                "Accept": "application/json",
                "Authorization": f"Bearer {self.credentials['access_token']}",
            },
        )

    def send(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().send(request)
        except AuthError as exc:
            raise AuthError(
                f"{exc}; connectors[{self.name}].credentials.access_token was refused by "
                f"{self.instance}: it must be a valid token of the brand's account with the "
                "read:notifications scope",
                status=exc.status,
                retry_after=exc.retry_after,
            ) from exc

    def parse_page(self, response: httpx.Response, cursor: str | None) -> Page:
        self._log_rate_limit(response)
        try:
            notifications = response.json()
        except ValueError as exc:
            raise PayloadError(
                f"{response.url.copy_with(query=None)} did not return JSON ({exc}); "
                f"check connectors[{self.name}].options.instance"
            ) from exc
        if not isinstance(notifications, list):
            raise PayloadError(
                f"{response.url.copy_with(query=None)} returned a {type(notifications).__name__}, "
                "not a list of notifications"
            )
        mentions = self.map_items(notifications, self._mention, label=_label)

        # The high-water mark of this run so far: the earlier pages' (from the token of the
        # request build_request just made) and this page's notification ids.
        top = _newest(self._top, *(_notification_id(n) for n in notifications))
        since_id = self._since_id(cursor)

        # A short page is not proof of the end (the server drops notifications from muted
        # accounts after the query), so the walk ends only on an empty page or no next link.
        max_id = _next_max_id(response)
        if notifications and max_id:
            # Not the last page: keep the cursor; carry the high-water mark in the token.
            token = self.dump_cursor({"max_id": max_id, "top": top})
            return Page(items=mentions, next_page_token=token)
        newest = _newest(since_id, top)
        if newest is None or newest == since_id:
            return Page(items=mentions)
        return Page(
            items=mentions,
            cursor=self.dump_cursor({**self.load_cursor(cursor), "since_id": newest}),
        )

    def _since_id(self, cursor: str | None) -> str | None:
        value = self.load_cursor(cursor).get("since_id")
        if value in (None, ""):
            return None
        if not str(value).isdigit():
            self.log.warning("ignoring cursor since_id %r: not a Mastodon id", value)
            return None
        return str(value)

    def _mention(self, notification: Mapping[str, Any]) -> NewMention | None:
        if not isinstance(notification, Mapping):
            raise PayloadError(f"notification is a {type(notification).__name__}, not an object")
        if notification.get("type") != "mention":
            return None  # an old server that ignores types[]
        status = notification["status"]
        if not isinstance(status, Mapping):
            raise PayloadError("mention notification has no status (deleted?)")
        mention = self._status_mention(status, status.get("account") or notification["account"])
        return replace(mention, raw={**mention.raw, "notification_id": notification.get("id")})

    def _status_mention(self, status: Mapping[str, Any], account: Any) -> NewMention:
        """A status (from a notification or a hashtag timeline) as a mention."""
        if not isinstance(status, Mapping) or not isinstance(account, Mapping):
            raise PayloadError("status without an account")
        status_id = str(status["id"])
        if not status_id:
            raise PayloadError("status has no id")
        body = html_to_text(str(status.get("content") or ""))
        spoiler = " ".join(str(status.get("spoiler_text") or "").split())
        text = f"{spoiler}\n\n{body}".strip() if spoiler else body
        if not text:
            raise PayloadError(f"status {status_id} has no text")
        reply_to = status.get("in_reply_to_id")
        parent_id = str(reply_to) if reply_to not in (None, "") else None
        return NewMention(
            source=self.name,
            external_id=status_id,
            platform=self.platform,
            text=text,
            url=status.get("url") or status.get("uri"),
            author_name=(account.get("display_name") or "").strip()
            or account.get("username")
            or None,
            author_handle="@" + str(account["acct"]),
            author_reach=_count(account.get("followers_count")),
            created_at=_parse_time(status["created_at"]),
            engagement=sum(
                _count(status.get(key)) or 0
                for key in ("favourites_count", "reblogs_count", "replies_count")
            ),
            # The thread's root would need a /context call; a reply points at its parent.
            thread_id=parent_id or status_id,
            parent_id=parent_id,
            raw={
                "status_id": status_id,
                "uri": status.get("uri"),
                "url": status.get("url"),
                "visibility": status.get("visibility"),
                "language": status.get("language"),
                "in_reply_to_id": reply_to,
                "in_reply_to_account_id": status.get("in_reply_to_account_id"),
                "spoiler_text": status.get("spoiler_text"),
                "content": status.get("content"),
                "account_id": account.get("id"),
                "account_url": account.get("url"),
            },
        )

    def _log_rate_limit(self, response: httpx.Response) -> None:
        remaining = response.headers.get("x-ratelimit-remaining")
        try:
            left = int(remaining) if remaining is not None else None
        except ValueError:
            return
        if left is not None and left < LOW_REMAINING:
            self.log.info(
                "%d API calls left on %s until %s",
                left,
                self.instance,
                response.headers.get("x-ratelimit-reset", "the window resets"),
            )


def _addressed(target: ReplyTarget, text: str) -> str:
    """The reply with the author's @name in front, unless the agent already wrote it."""
    handle = (target.author_handle or "").strip()
    body = text.strip()
    if not handle:
        return body
    # "@ruta_k thanks" is addressed; "@ruta_kalnina thanks" names someone else.
    if re.match(re.escape(handle) + r"(?![\w@.-]*\w)", body, re.IGNORECASE):
        return body
    return f"{handle} {body}"


def _plain(text: str) -> str:
    return " ".join(text.split()).casefold()


def _error_text(body: str | None) -> str:
    try:
        error = json.loads(body or "").get("error")
    except (ValueError, AttributeError):
        error = None
    return str(error or (body or "no reason given")[:200])


def _next_max_id(response: httpx.Response) -> str | None:
    """The max_id of the rel="next" link, if the server sent one."""
    url = response.links.get("next", {}).get("url")
    if not url:
        return None
    values = parse_qs(urlsplit(url).query).get("max_id")
    return values[0] if values else None


def _notification_id(notification: Any) -> str | None:
    if isinstance(notification, Mapping):
        value = notification.get("id")
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).isdigit():
            return str(value)
    return None


def _newest(*ids: str | None) -> str | None:
    """The newest of some Mastodon ids: numeric strings, compared as numbers."""
    present = [value for value in ids if value]
    return max(present, key=int) if present else None


def _count(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return max(0, value)
    return None


def _parse_time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise PayloadError(f"created_at {value!r} is not a timestamp")
    return datetime.fromisoformat(value)


def _label(notification: Any) -> str | None:
    if isinstance(notification, Mapping) and notification.get("id") not in (None, ""):
        return f"notification id={notification['id']!r}"
    return None

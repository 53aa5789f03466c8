"""The Connector base class: declarative attributes, two hooks, and the loop that owns paging.

A connector declares what it needs (`type`, `platform`, required options and credentials) and
implements `build_request` and `parse_page`; the base sends requests through triage.http's retry
policy, follows page tokens (refusing to loop on a repeated one) and yields one `Batch` per page.
The caller saves each Batch's cursor in the same transaction as its mentions and passes the last
saved cursor to the next `fetch`. The errors (ConnectorError and its subclasses) are drawn once,
in triage/http.py, and re-exported here.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar
from urllib.parse import urlsplit

import httpx

from connectors.reply import ReplyNotAllowed, ReplyRules, SentReply
from triage.clock import as_utc
from triage.config import ConfigError, ConnectorSettings
from triage.domain import Batch, NewMention, ReplyTarget
from triage.http import (
    DEFAULT_POLICY,
    AuthError,
    ConnectorError,
    PayloadError,
    PermanentError,
    RateLimitedError,
    RetryPolicy,
    TransientError,
    make_client,
    send,
)

__all__ = [
    "AuthError",
    "Connector",
    "ConnectorError",
    "Page",
    "PayloadError",
    "PermanentError",
    "RateLimitedError",
    "ReplyNotAllowed",
    "ReplyRules",
    "SentReply",
    "TransientError",
]

T = TypeVar("T")

# What a parse_item may raise about one bad item; anything else is a bug and stops the run.
SKIPPABLE_ERRORS: tuple[type[Exception], ...] = (PayloadError, KeyError, ValueError, TypeError)

# Options every connector accepts, on top of its own.
COMMON_OPTIONS: Mapping[str, str] = {"max_pages": "a whole number of pages per run, at least 1"}

_ID_KEYS = ("id", "guid", "uri", "link")


@dataclass(frozen=True, slots=True)
class Page:
    """One parsed page: its mentions, the token of the next page, and the cursor after it.

    A `cursor` of None means "unchanged": the base carries the previous cursor forward.
    """

    items: list[NewMention]
    next_page_token: str | None = None
    cursor: str | None = None


class Connector:
    """A source of mentions; subclasses declare attributes and implement the two hooks."""

    type: ClassVar[str]
    platform: ClassVar[str]
    required_options: ClassVar[tuple[str, ...]] = ()
    optional_options: ClassVar[tuple[str, ...]] = ()
    required_credentials: ClassVar[tuple[str, ...]] = ()
    optional_credentials: ClassVar[tuple[str, ...]] = ()
    # What a good value looks like, by option or credential name, for check_settings messages.
    expected: ClassVar[Mapping[str, str]] = {}
    uses_queries: ClassVar[bool] = True
    # Search sources need at least one query; the example shows what one looks like.
    requires_queries: ClassVar[bool] = False
    query_example: ClassVar[str] = '["kestrel mobile"]'
    # None: the platform has no API to answer with; agents open the mention and mark it replied.
    reply_rules: ClassVar[ReplyRules | None] = None
    # Credentials needed only to reply (reading works without them).
    reply_credentials: ClassVar[tuple[str, ...]] = ()
    # Whether a repeated post_reply with the same key is safe by itself (native idempotency
    # or one-reply-per-item overwrite semantics); otherwise find_reply guards a retry.
    reply_is_idempotent: ClassVar[bool] = False
    # True for sources that push to us (the inbound webhook): the scheduler never polls them.
    receives_pushes: ClassVar[bool] = False
    default_interval: ClassVar[float] = 15 * 60
    default_max_pages: ClassVar[int] = 20
    retry_policy: ClassVar[RetryPolicy] = DEFAULT_POLICY

    def __init__(
        self,
        settings: ConnectorSettings,
        *,
        client: httpx.Client | None = None,
        sleep: Callable[[float], Any] = time.sleep,
    ):
        problems = self.check_settings(settings)
        if problems:
            raise ConfigError(problems)
        self.settings = settings
        self.name = settings.name
        self.options: Mapping[str, Any] = settings.options
        self.credentials: Mapping[str, str] = settings.credentials
        self.log = logging.getLogger(f"triage.connectors.{settings.name}")
        self._client = client
        self._owns_client = client is None
        self._sleep = sleep

    @classmethod
    def check_surroundings(cls, settings: ConnectorSettings) -> list[str]:
        """What `triage check-config` can see is missing outside the settings (a file): said
        before the first poll, where a poll would only fail."""
        return []

    @classmethod
    def check_settings(cls, settings: ConnectorSettings) -> list[str]:
        """Problems with this connector's settings, one line each, without the file name."""
        prefix = f"connectors[{settings.name}]"
        problems: list[str] = []
        for key in cls.required_options:
            if _blank(settings.options.get(key)):
                problems.append(
                    f"{prefix}.options.{key}: required option is missing{cls._expect(key)}"
                )
        for key in cls.required_credentials:
            if _blank(settings.credentials.get(key)):
                problems.append(
                    f"{prefix}.credentials.{key}: required credential is missing{cls._expect(key)}"
                )
        known_options = {*cls.required_options, *cls.optional_options, *COMMON_OPTIONS}
        for key in sorted(set(settings.options) - known_options):
            problems.append(
                f"{prefix}.options.{key}: unknown option; "
                f"expected one of {', '.join(sorted(known_options))}"
            )
        known_credentials = {*cls.required_credentials, *cls.optional_credentials}
        for key in sorted(set(settings.credentials) - known_credentials):
            known = ", ".join(sorted(known_credentials)) or "none for this connector type"
            problems.append(f"{prefix}.credentials.{key}: unknown credential; expected {known}")
        max_pages = settings.options.get("max_pages")
        if max_pages is not None and (
            isinstance(max_pages, bool) or not isinstance(max_pages, int) or max_pages < 1
        ):
            problems.append(
                f"{prefix}.options.max_pages: {max_pages!r} is not valid; "
                f"expected {COMMON_OPTIONS['max_pages']}"
            )
        if settings.queries and not cls.uses_queries:
            problems.append(
                f"{prefix}.queries: {cls.type} connectors do not use queries; "
                "remove them; the source itself decides which mentions arrive"
            )
        if cls.requires_queries and not [query for query in settings.queries if query.strip()]:
            problems.append(
                f"{prefix}.queries: at least one query is required; "
                f"expected search terms such as {cls.query_example}"
            )
        return problems

    @classmethod
    def check_https_option(cls, settings: ConnectorSettings, key: str) -> list[str]:
        """A problem if option `key` is set but is not an https:// address with a host."""
        value = settings.options.get(key)
        if value is None:
            return []
        parts = urlsplit(value.strip()) if isinstance(value, str) else None
        if parts is not None and parts.scheme.lower() == "https" and parts.hostname:
            return []
        return [
            f"connectors[{settings.name}].options.{key}: {value!r} is not an https address"
            f"{cls._expect(key)}"
        ]

    @classmethod
    def _expect(cls, key: str) -> str:
        hint = cls.expected.get(key) or COMMON_OPTIONS.get(key)
        return f"; expected {hint}" if hint else ""

    @property
    def queries(self) -> list[str]:
        """The configured queries, stripped, blanks and repeats dropped."""
        return list(dict.fromkeys(q.strip() for q in self.settings.queries if q.strip()))

    @property
    def interval(self) -> float:
        """Seconds between runs: the configured interval, else this type's default."""
        if "interval" in self.settings.model_fields_set:
            return self.settings.interval
        return self.default_interval

    @property
    def max_pages(self) -> int:
        return int(self.options.get("max_pages", self.default_max_pages))

    @property
    def client(self) -> httpx.Client:
        """The HTTP client, created on first use unless one was passed in."""
        if self._client is None:
            self._client = self.create_client()
        return self._client

    def create_client(self) -> httpx.Client:
        """A new client for this connector; override to add auth or headers."""
        return make_client()

    def fetch(self, cursor: str | None) -> Iterator[Batch]:
        """One Batch per page of mentions newer than `cursor`, each with the cursor after it."""
        for page in self.pages(cursor):
            yield Batch(mentions=page.items, cursor=page.cursor)

    def pages(self, cursor: str | None) -> Iterator[Page]:
        """The page loop: request, parse, follow the next token; every Page carries its cursor.

        `build_request` always sees the cursor the run started from (page 2 of a query must ask
        the same question as page 1); `parse_page` sees the cursor as of the previous page.
        """
        start = cursor
        token: str | None = None
        requested: set[str] = set()
        for _ in range(self.max_pages):
            request = self.build_request(start, token)
            if request is None:
                return
            page = self.parse_page(self.send(request), cursor)
            if page.cursor is not None:
                cursor = page.cursor
            yield Page(page.items, page.next_page_token, cursor)
            token = page.next_page_token
            if not token:
                return
            if token in requested:
                raise PayloadError(
                    f"{self.name}: the API returned page token {token!r} again; "
                    "stopping instead of fetching the same pages forever"
                )
            requested.add(token)
        self.log.info(
            "stopped after %d pages (options.max_pages); the rest is fetched on the next run",
            self.max_pages,
        )

    def build_request(self, cursor: str | None, page_token: str | None) -> httpx.Request | None:
        """The request for one page, or None when there is nothing to ask for."""
        return None

    def parse_page(self, response: httpx.Response, cursor: str | None) -> Page:
        """Mentions, next page token and new cursor from one response."""
        return Page(items=[])

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A source either walks its own pages or fills in both hooks; anything else would fetch
        # nothing without a word, so it is refused when the class is defined.
        super().__init_subclass__(**kwargs)
        own_pages = cls.pages is not Connector.pages
        hooks = (cls.build_request is not Connector.build_request) + (
            cls.parse_page is not Connector.parse_page
        )
        if not own_pages and hooks != 2:
            raise TypeError(
                f"{cls.__name__} must implement pages, or both build_request and parse_page"
            )

    def send(self, request: httpx.Request) -> httpx.Response:
        """Send through the shared retry policy; errors name this connector."""
        return self.send_plain(request)

    def reply_unavailable(self) -> str | None:
        """Why this connector cannot reply, in words for the agent; None when it can."""
        if self.reply_rules is None:
            return (
                f"{self.platform} has no API for replies: open the mention, answer there, "
                "then mark it as replied"
            )
        missing = [key for key in self.reply_credentials if _blank(self.credentials.get(key))]
        if missing:
            names = " and ".join(f"connectors[{self.name}].credentials.{key}" for key in missing)
            return f"replying on {self.platform} needs {names}{self._expect(missing[0])}"
        return None

    def check_reply(self, target: ReplyTarget, text: str) -> list[str]:
        """What stops `text` from going out as a reply to `target`, one line each."""
        rules = self.reply_rules
        if rules is None:
            return []
        if not text.strip():
            return ["the reply is empty"]
        length = rules.length(text)
        if length > rules.max_length:
            return [
                f"the reply is {length} {rules.unit.label} long; {self.platform} allows "
                f"{rules.max_length}"
            ]
        return []

    def reply(self, target: ReplyTarget, text: str, *, key: str) -> SentReply:
        """Post `text` as a reply to `target`; a repeat with the same `key` never posts twice.

        Raises ReplyNotAllowed (nothing was sent) or another ConnectorError; an error with
        `uncertain` set may hide a reply that went out, so check `find_reply` before a retry.
        """
        reason = self.reply_unavailable()
        if reason:
            raise ReplyNotAllowed(reason)
        problems = self.check_reply(target, text)
        if problems:
            raise ReplyNotAllowed("; ".join(problems))
        return self.post_reply(target, text, key=key)

    def post_reply(self, target: ReplyTarget, text: str, *, key: str) -> SentReply:
        """The platform call behind `reply`, for connectors with `reply_rules`."""
        raise ReplyNotAllowed(f"{type(self).__name__} declares no way to reply")

    def find_reply(
        self, target: ReplyTarget, key: str, text: str | None = None
    ) -> SentReply | None:
        """Our earlier reply to `target` (the one with `text`, when given); None if none or unknown.

        Called before retrying an attempt that may have gone out. Connectors whose
        `post_reply` is idempotent by itself need not override it.
        """
        return None

    def send_once(self, request: httpx.Request) -> httpx.Response:
        """Send a request that must not be repeated blindly (posting a reply)."""
        return self.send_plain(request, idempotent=False)

    def send_plain(self, request: httpx.Request, *, idempotent: bool = True) -> httpx.Response:
        """The shared retry policy without a subclass's own error wording."""
        return send(
            self.client,
            request,
            policy=self.retry_policy,
            sleep=self._sleep,
            connector=self.name,
            idempotent=idempotent,
        )

    def map_items(
        self,
        raw_items: Iterable[T],
        parse_item: Callable[[T], NewMention | None],
        *,
        label: Callable[[T], str | None] | None = None,
    ) -> list[NewMention]:
        """Map items one by one; a malformed one is logged and skipped, the rest are kept.

        `parse_item` returns None to drop an item quietly (e.g. already seen) and raises
        PayloadError, KeyError, ValueError or TypeError for a malformed one.
        """
        describe = label or item_label
        mentions: list[NewMention] = []
        for raw in raw_items:
            try:
                mention = parse_item(raw)
            except SKIPPABLE_ERRORS as exc:
                self.log.warning(
                    "skipped %s: %s", describe(raw) or "an item without an id", _reason(exc)
                )
                continue
            if mention is not None:
                mentions.append(mention)
        return mentions

    def load_cursor(self, cursor: str | None) -> dict[str, Any]:
        """A JSON cursor as a dict; an unreadable one is logged and treated as no cursor."""
        if not cursor:
            return {}
        try:
            state = json.loads(cursor)
        except ValueError:
            state = None
        if not isinstance(state, dict):
            self.log.warning("ignoring unreadable cursor %r; starting from scratch", cursor[:80])
            return {}
        return state

    @staticmethod
    def dump_cursor(state: Mapping[str, Any]) -> str:
        """A compact, stable JSON cursor."""
        return json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def close(self) -> None:
        """Close the HTTP client if this connector created it."""
        if self._client is not None and self._owns_client:
            self._client.close()
            self._client = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time ("Z" allowed) as aware UTC; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def is_newer(moment: datetime | None, since: datetime | None) -> bool:
    """Whether `moment` is after the mark `since` (everything is, without a mark)."""
    return moment is not None and (since is None or moment > since)


def latest(*moments: datetime | None) -> datetime | None:
    """The latest of some times, ignoring the missing ones."""
    present = [moment for moment in moments if moment is not None]
    return max(present) if present else None


def json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    """A response's JSON object; PayloadError naming `what` when it is not one."""
    try:
        body = response.json()
    except ValueError as exc:
        raise PayloadError(f"{what} did not return JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise PayloadError(f"{what} returned a {type(body).__name__}, not an object")
    return body


def item_label(raw: object) -> str | None:
    """How a log line names a raw item: its id (or guid, uri, link) when it has one."""
    if isinstance(raw, Mapping):
        for key in _ID_KEYS:
            value = raw.get(key)
            if value not in (None, ""):
                return f"item {key}={value!r}"
    return None


def _reason(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}" if exc.args else "missing field"
    return str(exc) or type(exc).__name__


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())

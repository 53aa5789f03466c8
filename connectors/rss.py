"""Mentions from an RSS 2.0 or Atom feed, such as a Google Alerts feed for the brand's name.

Fetched through the base (so retries and backoff apply) with a conditional GET, parsed by
feedparser from the response bytes. Feeds are not paged: each run reads the whole feed and emits
entries no older than the newest one already seen minus `overlap` (the store dedupes the rest).
"""

from __future__ import annotations

import base64
import calendar
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import feedparser
import httpx

from connectors.base import Connector, Page, PayloadError
from triage.clock import utcnow
from triage.config import ConnectorSettings, parse_duration
from triage.domain import NewMention

DEFAULT_OVERLAP = "1d"
ACCEPT = (
    "application/atom+xml, application/rss+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)
# Tags after which text reads as a new line or word, so "<p>a</p><p>b</p>" is not "ab".
_BREAKING_TAGS = frozenset(
    {"br", "p", "div", "li", "ul", "ol", "tr", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6"}
    | {"blockquote", "pre", "hr", "section", "article", "header", "footer", "table", "dd", "dt"}
)
_HIDDEN_TAGS = frozenset({"script", "style", "template", "noscript"})
_HARMLESS = (feedparser.NonXMLContentType, feedparser.CharacterEncodingOverride)


class RssConnector(Connector):
    """One RSS or Atom feed per connector; Google Alerts redirect links are unwrapped."""

    type = "rss"
    platform = "rss"
    required_options = ("url",)
    optional_options = ("overlap",)
    optional_credentials = ("username", "password", "token")
    expected: ClassVar[Mapping[str, str]] = {
        "url": "the feed URL (http:// or https://)",
        "overlap": 'a duration such as "6h" or "1d"',
        "username": "the HTTP basic-auth user name, with password",
        "password": "the HTTP basic-auth password, with username",
        "token": "a token sent as Authorization: Bearer <token>",
    }
    uses_queries = False
    default_interval = 30 * 60.0

    @classmethod
    def check_settings(cls, settings: ConnectorSettings) -> list[str]:
        problems = super().check_settings(settings)
        prefix = f"connectors[{settings.name}].options"
        url = settings.options.get("url")
        if url is not None and not (
            isinstance(url, str) and url.strip().lower().startswith(("http://", "https://"))
        ):
            problems.append(
                f"{prefix}.url: {url!r} is not a web address; expected {cls.expected['url']}"
            )
        given = {key for key, value in settings.credentials.items() if value}
        if len(given & {"username", "password"}) == 1:
            missing = ({"username", "password"} - given).pop()
            problems.append(
                f"connectors[{settings.name}].credentials.{missing}: required with "
                f"{({'username', 'password'} & given).pop()}; expected {cls.expected[missing]}"
            )
        if "token" in given and given & {"username", "password"}:
            problems.append(
                f"connectors[{settings.name}].credentials: both a token and a username/password "
                "are set; expected one or the other"
            )
        if "overlap" in settings.options:
            try:
                parse_duration(settings.options["overlap"])
            except ValueError as exc:
                problems.append(f"{prefix}.overlap: {exc}")
        return problems

    @property
    def url(self) -> str:
        return str(self.options["url"]).strip()

    @property
    def overlap(self) -> timedelta:
        return timedelta(seconds=parse_duration(self.options.get("overlap", DEFAULT_OVERLAP)))

    def build_request(self, cursor: str | None, page_token: str | None) -> httpx.Request | None:
        state = self.load_cursor(cursor)
        headers = {"Accept": ACCEPT}
        if state.get("etag"):
            headers["If-None-Match"] = str(state["etag"])
        if state.get("last_modified"):
            headers["If-Modified-Since"] = str(state["last_modified"])
        authorization = self._authorization()
        if authorization:
            headers["Authorization"] = authorization
        return self.client.build_request("GET", self.url, headers=headers)

    def _authorization(self) -> str | None:
        # On the request, not the client, so a client passed in by the caller still works.
        if self.credentials.get("token"):
            return f"Bearer {self.credentials['token']}"
        if self.credentials.get("username"):
            pair = f"{self.credentials['username']}:{self.credentials.get('password', '')}"
            return "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")
        return None

    def parse_page(self, response: httpx.Response, cursor: str | None) -> Page:
        if response.status_code == httpx.codes.NOT_MODIFIED:
            return Page(items=[], cursor=cursor)
        feed = feedparser.parse(
            response.content,
            response_headers={
                "content-type": response.headers.get("content-type", "application/xml"),
                "content-location": str(response.url),
            },
        )
        if not feed.get("version"):
            kind = response.headers.get("content-type", "no content type")
            raise PayloadError(
                f"{self.url} did not return an RSS or Atom feed (got {kind}, "
                f"{len(response.content)} bytes); check connectors[{self.name}].options.url"
            )
        if feed.get("bozo"):
            problem = feed.get("bozo_exception")
            # A feed served as text/html or with a wrong charset label still parsed cleanly.
            level = logging.INFO if isinstance(problem, _HARMLESS) else logging.WARNING
            self.log.log(
                level,
                "%s is not well-formed (%s); keeping the %d entries that could be read",
                self.url,
                problem,
                len(feed.entries),
            )

        state = self.load_cursor(cursor)
        since = _parse_iso(state.get("newest"))
        threshold = since - self.overlap if since else None
        mentions = self.map_items(
            feed.entries, lambda entry: self._mention(entry, threshold), label=_entry_label
        )
        seen = [moment for moment in (since, *(m.created_at for m in mentions)) if moment]
        # An entry dated in the future must not hide the real entries that follow it.
        newest = min(max(seen), utcnow()) if seen else None
        new_state = {
            "etag": response.headers.get("etag"),
            "last_modified": response.headers.get("last-modified"),
            "newest": newest.isoformat() if newest else None,
        }
        return Page(items=mentions, cursor=self.dump_cursor(new_state))

    def _mention(self, entry: Mapping[str, Any], threshold: datetime | None) -> NewMention | None:
        link = unwrap_link(_get(entry, "link") or "")
        external_id = (_get(entry, "id") or "").strip() or link
        if not external_id:
            raise PayloadError("entry has neither an id nor a link")
        created_at = _entry_time(entry)
        if threshold and created_at and created_at < threshold:
            return None
        title = _plain(_get(entry, "title"), _get(entry, "title_detail"))
        body = _plain(*_entry_body(entry))
        # RSS items often repeat the title as the description's first words.
        text = body if body.startswith(title) else f"{title}\n\n{body}".strip()
        if not text:
            raise PayloadError("entry has no title or text")
        return NewMention(
            source=self.name,
            external_id=external_id,
            platform=self.platform,
            text=text,
            url=link,
            author_name=(_get(entry, "author") or "").strip() or None,
            created_at=created_at,
            title=title or None,
            raw={
                "id": _get(entry, "id"),
                "link": _get(entry, "link"),
                "title": _get(entry, "title"),
                "summary": _get(entry, "summary"),
                "published": _get(entry, "published"),
                "updated": _get(entry, "updated"),
                "author": _get(entry, "author"),
            },
        )


def unwrap_link(link: str) -> str | None:
    """The real target of a Google redirect link (as Google Alerts sends); None unless http(s)."""
    link = link.strip()
    parts = urlsplit(link)
    host = parts.hostname or ""
    if parts.path == "/url" and (
        host == "google.com" or host.startswith(("www.google.", "google."))
    ):
        query = parse_qs(parts.query)
        for key in ("url", "q"):
            target = (query.get(key) or [""])[0]
            if _is_web(target):
                return target
    # Anything else (javascript:, data:, mailto:) must never become a link in Slack.
    return link if _is_web(link) else None


def _is_web(link: str) -> bool:
    return link.lower().startswith(("http://", "https://"))


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN_TAGS:
            self.hidden += 1
        elif tag in _BREAKING_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN_TAGS:
            self.hidden = max(0, self.hidden - 1)
        elif tag in _BREAKING_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_to_text(fragment: str) -> str:
    """Plain text from an HTML fragment: tags dropped, entities unescaped, whitespace tidied."""
    if not fragment:
        return ""
    parser = _TextExtractor()
    parser.feed(fragment)
    parser.close()
    text = "".join(parser.parts)
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def _plain(value: Any, detail: Mapping[str, Any] | None) -> str:
    """Text of a feed field: HTML is stripped, plain text only has its whitespace tidied."""
    text = str(value or "")
    if detail and detail.get("type") == "text/plain":
        return "\n".join(" ".join(line.split()) for line in text.splitlines() if line.strip())
    return html_to_text(text)


def _get(entry: Mapping[str, Any], key: str) -> Any:
    """A field as parsed, without feedparser's deprecated updated/published fallback."""
    return dict.get(entry, key) if isinstance(entry, dict) else entry.get(key)


def _entry_body(entry: Mapping[str, Any]) -> tuple[Any, Mapping[str, Any] | None]:
    for content in _get(entry, "content") or ():
        if content.get("value"):
            return content["value"], content
    return _get(entry, "summary"), _get(entry, "summary_detail")


def _entry_time(entry: Mapping[str, Any]) -> datetime | None:
    for key in ("published_parsed", "updated_parsed"):
        parsed: time.struct_time | None = _get(entry, key)
        if parsed:
            return datetime.fromtimestamp(calendar.timegm(parsed), tz=UTC)
    return None


def _entry_label(entry: Mapping[str, Any]) -> str | None:
    for key in ("id", "link", "title"):
        if _get(entry, key):
            return f"entry {key}={_get(entry, key)!r}"
    return None


def _parse_iso(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

"""Mentions from Hacker News stories and comments, through the public Algolia search API.

Each configured query is searched newest first (`search_by_date`) for stories and comments created
after the query's cursor, 100 hits a page. Algolia serves at most 1,000 hits per search, and a run
may stop at `max_pages`, so each query's cursor is a window: `since` (everything up to it is done)
and, while a window is still being read, `until` (the oldest hit read so far; older hits down to
`since` are still to come) and `newest` (where `since` moves once the window is finished). Every
page's Batch carries the cursor as of that page, so an interrupted run resumes where it stopped:
nothing is skipped and nothing older than `since` is asked for again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from connectors.base import Connector, Page, PayloadError
from connectors.rss import html_to_text
from triage.clock import utcnow
from triage.config import ConnectorSettings
from triage.domain import NewMention

SEARCH_URL = "https://hn.algolia.com/api/v1/search_by_date"
ITEM_URL = "https://news.ycombinator.com/item?id={}"
HITS_PER_PAGE = 100
TAGS = "(story,comment)"
# How far back the very first run of a query looks.
FIRST_RUN_LOOKBACK = timedelta(days=7)


class HackerNewsConnector(Connector):
    """Stories and comments matching any of `queries`; no account or credentials needed."""

    type = "hackernews"
    requires_queries = True
    platform = "hackernews"

    @classmethod
    def check_settings(cls, settings: ConnectorSettings) -> list[str]:
        problems = super().check_settings(settings)
        return problems

    def pages(self, cursor: str | None) -> Iterator[Page]:
        """Every query in turn, each up to `max_pages` pages; one Page per response."""
        saved = self.load_cursor(cursor)
        state: dict[str, dict[str, int]] = {}
        for query in self.queries:
            state[query] = _window(saved.get(query)) or {"since": self._first_since()}
        for query in self.queries:
            yield from self._query_pages(query, state)

    def _first_since(self) -> int:
        return int((utcnow() - FIRST_RUN_LOOKBACK).timestamp())

    def _query_pages(self, query: str, state: dict[str, dict[str, int]]) -> Iterator[Page]:
        window = state[query]
        since = window["since"]
        # The filter stays fixed while paging, so page n+1 continues page n.
        until, page = window.get("until"), 0
        for _ in range(self.max_pages):
            response = self.send(self._request(query, since, until, page))
            body = _json(response, self.name)
            hits = body["hits"]
            mentions = self.map_items(hits, self._mention, label=_hit_label)
            stamps = [
                hit["created_at_i"]
                for hit in hits
                if isinstance(hit, Mapping) and _is_stamp(hit.get("created_at_i"))
            ]
            newest = max([window.get("newest", since), *stamps])
            nb_pages = _count(body.get("nbPages"))
            nb_hits = _count(body.get("nbHits"))
            done = False
            if page + 1 < nb_pages:
                page += 1
            elif hits and nb_hits > nb_pages * HITS_PER_PAGE and stamps:
                # Algolia stops paging at 1,000 hits: read on below the oldest one, from page 0.
                until, page = min(stamps), 0
            else:
                done = True
            if done:
                window = {"since": newest}
            else:
                # Until the window is finished, a resumed run reads down from the oldest hit so
                # far (inclusive: others may share its second) to `since`.
                oldest = min([*stamps, *([window["until"]] if "until" in window else [])])
                if stamps or "until" in window:
                    window = {"since": since, "until": oldest, "newest": newest}
            state[query] = window
            yield Page(items=mentions, cursor=self.dump_cursor(state))
            if done:
                return
        self.log.info(
            "query %r: stopped after %d pages (options.max_pages); "
            "the rest is fetched on the next run",
            query,
            self.max_pages,
        )

    def _request(self, query: str, since: int, until: int | None, page: int) -> httpx.Request:
        filters = f"created_at_i>{since}" + (f",created_at_i<={until}" if until else "")
        params = {
            "query": query,
            "tags": TAGS,
            "hitsPerPage": HITS_PER_PAGE,
            "numericFilters": filters,
            "page": page,
        }
        return self.client.build_request("GET", SEARCH_URL, params=params)

    def _mention(self, hit: Mapping[str, Any]) -> NewMention:
        if not isinstance(hit, Mapping):
            raise PayloadError(f"hit is a {type(hit).__name__}, not an object")
        external_id = str(hit.get("objectID") or "").strip()
        if not external_id:
            raise PayloadError("hit has no objectID")
        is_story = hit.get("comment_text") is None
        title = " ".join(str(hit.get("title") or "").split()) if is_story else ""
        body = html_to_text(str(hit.get("story_text" if is_story else "comment_text") or ""))
        text = f"{title}\n\n{body}".strip()
        if not text:
            raise PayloadError("hit has no title or text")
        points, comments = hit.get("points"), hit.get("num_comments")
        counts = [n for n in (points, comments) if isinstance(n, int) and not isinstance(n, bool)]
        return NewMention(
            source=self.name,
            external_id=external_id,
            platform=self.platform,
            text=text,
            url=ITEM_URL.format(external_id),
            author_handle=_text(hit.get("author")),
            created_at=_created_at(hit),
            engagement=sum(counts) if counts else None,
            thread_id=_text(hit.get("story_id")),
            parent_id=_text(hit.get("parent_id")),
            title=title or None,
            raw={
                key: hit.get(key)
                for key in (
                    "objectID",
                    "_tags",
                    "title",
                    "url",
                    "author",
                    "points",
                    "num_comments",
                    "story_text",
                    "comment_text",
                    "story_id",
                    "story_title",
                    "story_url",
                    "parent_id",
                    "created_at",
                    "created_at_i",
                )
                if key in hit
            },
        )


def _window(value: Any) -> dict[str, int] | None:
    """A saved per-query window, or None when it is missing or unreadable."""
    if not isinstance(value, Mapping) or not _is_stamp(value.get("since")):
        return None
    window = {"since": value["since"]}
    if _is_stamp(value.get("until")) and _is_stamp(value.get("newest")):
        window["until"] = value["until"]
        window["newest"] = value["newest"]
    return window


def _json(response: httpx.Response, name: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise PayloadError(f"{name}: Hacker News search did not return JSON ({exc})") from exc
    if not isinstance(body, dict) or not isinstance(body.get("hits"), list):
        raise PayloadError(f"{name}: Hacker News search returned no list of hits")
    return body


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _is_stamp(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _created_at(hit: Mapping[str, Any]) -> datetime | None:
    stamp = hit.get("created_at_i")
    if _is_stamp(stamp):
        return datetime.fromtimestamp(stamp, tz=UTC)
    return None


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def _hit_label(hit: Any) -> str | None:
    if isinstance(hit, Mapping):
        for key in ("objectID", "title", "author"):
            if hit.get(key):
                return f"hit {key}={hit[key]!r}"
    return None

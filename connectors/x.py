"""Posts on X matching the configured queries, through the API v2 recent search (app-only auth).

Each query is searched with `GET https://api.x.com/2/tweets/search/recent`, 10 to 100 posts a
page, with the author expansion for names, handles and follower counts. Results arrive newest
first and `meta.next_token` leads to older pages.

Cursor and crash safety. The cursor holds, per query, the newest post id of its last completed
walk: `{"<query>": "<since_id>"}`. A run asks for `since_id=<cursor>` on every page of the walk
and records page 1's `meta.newest_id` only on the walk's last page; saving it earlier would make
a crash on page 2 skip pages 2..n for good. A crash mid-walk re-reads the same pages next run and
the store dedupes by (source, external_id). A walk cut short by `options.max_pages` keeps the old
cursor too, so the next run starts from the top again (as Mastodon's connector does).

Recent search covers only the last 7 days and refuses (HTTP 400) a `since_id` older than that, so
a cursor that old is dropped with a warning and the query reads the whole 7 days again.

Rate limits: X sends `x-rate-limit-limit/-remaining/-reset` (reset in epoch seconds), which
triage.http's RATE_LIMIT_HEADERS reads for a 429; this connector logs when few calls are left.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, ClassVar

import httpx

from connectors.base import AuthError, Connector, Page, PayloadError
from triage.clock import utcnow
from triage.config import ConnectorSettings
from triage.domain import NewMention

SEARCH_URL = "https://api.x.com/2/tweets/search/recent"
STATUS_URL = "https://x.com/{}/status/{}"
# X serves any post at this address when the author's user name is unknown.
ANONYMOUS_STATUS_URL = "https://x.com/i/web/status/{}"
TWEET_FIELDS = (
    "created_at,public_metrics,conversation_id,in_reply_to_user_id,referenced_tweets,lang,"
    "author_id,entities"
)
USER_FIELDS = "name,username,public_metrics,verified"
DEFAULT_MAX_RESULTS = 100
ENGAGEMENT_METRICS = ("like_count", "reply_count", "retweet_count", "quote_count")
# Recent search refuses a since_id older than 7 days; the margin covers clock skew and the run.
SEARCH_WINDOW = timedelta(days=7) - timedelta(minutes=10)
# Post ids are snowflakes: milliseconds since this epoch, shifted left by 22 bits.
SNOWFLAKE_EPOCH_MS = 1_288_834_974_657
LOW_REMAINING = 10
# An @-name in a query, unless negated ("-@kestrel" excludes that account rather than naming it).
_HANDLE = re.compile(r"(?<![\w@-])@(\w{1,15})")


class XConnector(Connector):
    """Posts matching any of `queries` from the last 7 days, read with an app-only bearer token."""

    type = "x"
    requires_queries = True
    query_example = '["@kestrel OR kestrel -is:retweet"]'
    platform = "x"
    optional_options = ("max_results",)
    required_credentials = ("bearer_token",)
    expected: ClassVar[Mapping[str, str]] = {
        "bearer_token": "the app-only bearer token of an X developer app attached to a Project "
        "with recent search access",
        "max_results": "a whole number of posts per page from 10 to 100",
    }

    @classmethod
    def check_settings(cls, settings: ConnectorSettings) -> list[str]:
        problems = super().check_settings(settings)
        prefix = f"connectors[{settings.name}]"
        max_results = settings.options.get("max_results")
        if max_results is not None and (
            isinstance(max_results, bool)
            or not isinstance(max_results, int)
            or not 10 <= max_results <= 100
        ):
            problems.append(
                f"{prefix}.options.max_results: {max_results!r} is not valid; "
                f"expected {cls.expected['max_results']}"
            )
        return problems

    @property
    def brand_handles(self) -> set[str]:
        """The @-names the queries search for: the brand's own accounts."""
        return {name.lower() for query in self.queries for name in _HANDLE.findall(query)}

    def pages(self, cursor: str | None) -> Iterator[Page]:
        """Every query in turn, each up to `max_pages` pages; one Page per response."""
        saved = self.load_cursor(cursor)
        state: dict[str, str] = {}
        for query in self.queries:
            since_id = self._since_id(query, saved.get(query))
            if since_id:
                state[query] = since_id
        for query in self.queries:
            yield from self._query_pages(query, state)

    def _query_pages(self, query: str, state: dict[str, str]) -> Iterator[Page]:
        since_id = state.get(query)
        token: str | None = None
        newest: str | None = None
        requested: set[str] = set()
        for number in range(1, self.max_pages + 1):
            response = self.send(self._request(query, since_id, token))
            body = self._json(response)
            self._log_rate_limit(response)
            self._log_partial_errors(query, body)
            tweets = body.get("data") or []
            if not isinstance(tweets, list):
                raise PayloadError(f"{self.name}: X search returned data that is not a list")
            users = _users(body)
            mentions = self.map_items(tweets, partial(self._mention, users=users), label=_label)
            meta = _object(body.get("meta"))
            if number == 1:
                newest = _snowflake(meta.get("newest_id")) or _newest(
                    *(_snowflake(t.get("id")) for t in tweets if isinstance(t, Mapping))
                )
            token = _text(meta.get("next_token"))
            if not token:
                if newest and (since_id is None or int(newest) > int(since_id)):
                    state[query] = newest
                yield Page(items=mentions, cursor=self.dump_cursor(state))
                return
            if token in requested:
                raise PayloadError(
                    f"{self.name}: X returned next_token {token!r} again for query {query!r}; "
                    "stopping instead of fetching the same pages forever"
                )
            requested.add(token)
            yield Page(items=mentions, next_page_token=token, cursor=self.dump_cursor(state))
        self.log.info(
            "query %r: stopped after %d pages (options.max_pages); "
            "the cursor stays put, so the next run starts from the newest posts again",
            query,
            self.max_pages,
        )

    def _since_id(self, query: str, value: Any) -> str | None:
        since_id = _snowflake(value)
        if value not in (None, "") and since_id is None:
            self.log.warning("query %r: ignoring cursor since_id %r: not a post id", query, value)
            return None
        if since_id is None:
            return None
        posted = datetime.fromtimestamp(((int(since_id) >> 22) + SNOWFLAKE_EPOCH_MS) / 1000, tz=UTC)
        if utcnow() - posted > SEARCH_WINDOW:
            self.log.warning(
                "query %r: the last run's newest post (%s, %s) is older than recent search's "
                "7 days; reading the last 7 days instead, posts in between are out of reach",
                query,
                since_id,
                posted.isoformat(timespec="seconds"),
            )
            return None
        return since_id

    def _request(self, query: str, since_id: str | None, token: str | None) -> httpx.Request:
        params: dict[str, str] = {
            "query": query,
            "max_results": str(self.options.get("max_results", DEFAULT_MAX_RESULTS)),
            "tweet.fields": TWEET_FIELDS,
            "expansions": "author_id",
            "user.fields": USER_FIELDS,
        }
        if since_id:
            params["since_id"] = since_id
        if token:
            params["next_token"] = token
        return self.client.build_request(
            "GET",
            SEARCH_URL,
            params=params,
            headers={"Authorization": f"Bearer {self.credentials['bearer_token'].strip()}"},
        )

    def send(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().send(request)
        except AuthError as exc:
            setting = f"connectors[{self.name}].credentials.bearer_token"
            if exc.status == 403:
                # With a valid app-only token, a 403 from search means the app may not call it.
                advice = (
                    f"{setting} was accepted but its app may not use recent search: the app must "
                    "be attached to a Project in the X developer portal, and the Project's "
                    "access level must include GET /2/tweets/search/recent "
                    "(reason client-not-enrolled)"
                )
            else:
                advice = (
                    f"{setting} was refused by X: it must be the app-only bearer token of an X "
                    "developer app (regenerated tokens replace the old one)"
                )
            raise AuthError(
                f"{exc}; {advice}", status=exc.status, retry_after=exc.retry_after
            ) from exc

    def _json(self, response: httpx.Response) -> Mapping[str, Any]:
        try:
            body = response.json()
        except ValueError as exc:
            raise PayloadError(f"{self.name}: X search did not return JSON ({exc})") from exc
        if not isinstance(body, Mapping):
            raise PayloadError(f"{self.name}: X search returned a {type(body).__name__}")
        return body

    def _mention(self, tweet: Any, *, users: Mapping[str, Mapping[str, Any]]) -> NewMention:
        if not isinstance(tweet, Mapping):
            raise PayloadError(f"post is a {type(tweet).__name__}, not an object")
        tweet_id = _snowflake(tweet.get("id"))
        if tweet_id is None:
            raise PayloadError(f"post id {tweet.get('id')!r} is not a post id")
        # v2 escapes &, < and > in post text.
        text = html.unescape(str(tweet["text"])).strip()
        if not text:
            raise PayloadError(f"post {tweet_id} has no text")
        author_id = _text(tweet.get("author_id"))
        # A suspended or protected author is missing from includes.users; keep the post.
        user = users.get(author_id or "", {})
        username = _text(user.get("username"))
        metrics = _object(tweet.get("public_metrics"))
        counts = [_count(metrics.get(key)) for key in ENGAGEMENT_METRICS]
        present = [n for n in counts if n is not None]
        references = tweet.get("referenced_tweets")
        references = references if isinstance(references, list) else []
        parent_id = next(
            (
                _text(ref.get("id"))
                for ref in references
                if isinstance(ref, Mapping) and ref.get("type") == "replied_to"
            ),
            None,
        )
        entities = _object(tweet.get("entities"))
        mentioned = [
            str(m["username"])
            for m in _list(entities.get("mentions"))
            if isinstance(m, Mapping) and m.get("username")
        ]
        handles = self.brand_handles
        return NewMention(
            source=self.name,
            external_id=tweet_id,
            platform=self.platform,
            text=text,
            url=STATUS_URL.format(username, tweet_id)
            if username
            else ANONYMOUS_STATUS_URL.format(tweet_id),
            author_name=_text(user.get("name")),
            author_handle=f"@{username}" if username else None,
            author_reach=_count(_object(user.get("public_metrics")).get("followers_count")),
            created_at=datetime.fromisoformat(str(tweet["created_at"])),
            engagement=sum(present) if present else None,
            thread_id=_text(tweet.get("conversation_id")) or tweet_id,
            parent_id=parent_id,
            raw={
                "id": tweet_id,
                "author_id": author_id,
                "conversation_id": tweet.get("conversation_id"),
                "in_reply_to_user_id": tweet.get("in_reply_to_user_id"),
                "referenced_tweets": references,
                "lang": tweet.get("lang"),
                "public_metrics": metrics,
                "entities": entities,
                "mentioned_usernames": mentioned,
                # Whether the post @-mentions an account the queries search for: a reply feature
                # answers direct mentions differently from posts that only name the brand.
                "mentions_brand": any(name.lower() in handles for name in mentioned),
                "author_verified": user.get("verified"),
            },
        )

    def _log_partial_errors(self, query: str, body: Mapping[str, Any]) -> None:
        errors = body.get("errors") or []
        for error in errors if isinstance(errors, list) else [errors]:
            if not isinstance(error, Mapping):
                continue
            self.log.warning(
                "query %r: X reported a partial error, kept the rest: %s: %s",
                query,
                error.get("title") or error.get("type") or "error",
                error.get("detail") or error.get("message") or "",
            )

    def _log_rate_limit(self, response: httpx.Response) -> None:
        remaining = response.headers.get("x-rate-limit-remaining")
        reset = response.headers.get("x-rate-limit-reset")
        try:
            left = int(remaining) if remaining is not None else None
        except ValueError:
            return
        if left is not None and left < LOW_REMAINING:
            when = reset
            if reset and reset.isdigit():
                when = datetime.fromtimestamp(int(reset), tz=UTC).isoformat(timespec="seconds")
            self.log.info("%d X search calls left until %s", left, when or "the window resets")


def _users(body: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    includes = body.get("includes")
    users = includes.get("users") if isinstance(includes, Mapping) else None
    return {
        str(user["id"]): user
        for user in users or []
        if isinstance(user, Mapping) and user.get("id")
    }


def _object(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _snowflake(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    return text if text.isdigit() else None


def _newest(*ids: str | None) -> str | None:
    present = [value for value in ids if value]
    return max(present, key=int) if present else None


def _count(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return max(0, value)
    return None


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def _label(tweet: Any) -> str | None:
    if isinstance(tweet, Mapping) and tweet.get("id") not in (None, ""):
        return f"post id={tweet['id']!r}"
    return None

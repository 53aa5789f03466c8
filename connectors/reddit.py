"""Reddit posts matching the configured queries, read through Reddit's OAuth API.

Auth is application-only OAuth2: `POST https://www.reddit.com/api/v1/access_token` with the app's
client_id:client_secret as HTTP basic auth and `grant_type=client_credentials`. The bearer token
is kept on the instance until shortly before it expires; a 401 from the API fetches a new one
once (Reddit revokes tokens early at times), a second 401 is fatal. Every request carries the
User-Agent Reddit requires, `python:triage:<version> (by /u/<username>)`; Reddit throttles
generic agents hard.

Each query is searched with `GET https://oauth.reddit.com/search` (or `/r/<subreddit>/search`
with `restrict_sr=1`), `sort=new`, `type=link`, 100 posts a page, following the Listing's
`data.after`. Comments are not searchable through this endpoint, so only posts are read.

Cursor and crash safety. Per query the cursor holds `since` (the newest `created_utc` already
read) and `names` (the fullnames posted in that second, which are not read again). Results arrive
newest first, so `since` only moves when the walk for that query finishes (no `after`, an empty
page, or a page reaching posts at or older than `since`). While a walk is under way each Batch
also saves `after` (where the next page starts) and `newest`/`newest_names` (where `since` moves
once done), so a crash or `max_pages` stop resumes below the last saved page: nothing newer than
`since` is skipped, and the store dedupes what is read twice. Known limit: Reddit serves about
1,000 results per listing, and a saved `after` whose post was deleted yields an empty page, which
ends that walk; posts below it are then not read.

Rate limits: Reddit sends `X-Ratelimit-Remaining/-Used/-Reset` (reset in seconds to wait);
triage.http's RATE_LIMIT_HEADERS reads remaining/reset for a 429, and this connector logs when
few calls are left.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from time import monotonic
from typing import Any, ClassVar

import httpx

from connectors.base import AuthError, Connector, Page, PayloadError
from triage import __version__
from triage.config import ConnectorSettings
from triage.domain import NewMention
from triage.http import make_client

TOKEN_URL = "https://www.reddit.com/api/v1/access_token"
API = "https://oauth.reddit.com"
SITE = "https://www.reddit.com"
PAGE_SIZE = 100
# Fetch a new token this long before Reddit's expiry, so no request goes out with a stale one.
TOKEN_MARGIN = 60.0
# Below this many calls left in the window, say so in the log.
LOW_REMAINING = 20

_USERNAME = re.compile(r"^[A-Za-z0-9_-]{3,20}$")
_SUBREDDIT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]{1,20}$")
_CREDENTIALS_HINT = (
    "the client id and secret of a Reddit app of type script or web app, "
    "from https://www.reddit.com/prefs/apps"
)


class RedditConnector(Connector):
    """Posts matching any of `queries`, site-wide or in one subreddit; an app's credentials."""

    type = "reddit"
    requires_queries = True
    platform = "reddit"
    optional_options = ("username", "subreddit")
    required_credentials = ("client_id", "client_secret")
    expected: ClassVar[Mapping[str, str]] = {
        "username": "the Reddit account that owns the app, e.g. kestrel_care (for the User-Agent)",
        "subreddit": "a subreddit name such as latvia, to search only there",
        "client_id": _CREDENTIALS_HINT,
        "client_secret": _CREDENTIALS_HINT,
    }

    def __init__(self, settings: ConnectorSettings, **kwargs: Any):
        super().__init__(settings, **kwargs)
        self._token: str | None = None
        self._token_expires = 0.0

    @classmethod
    def check_settings(cls, settings: ConnectorSettings) -> list[str]:
        problems = super().check_settings(settings)
        prefix = f"connectors[{settings.name}]"
        username = settings.options.get("username")
        if username is not None and not (
            isinstance(username, str) and _USERNAME.match(_strip(username, "u/"))
        ):
            problems.append(
                f"{prefix}.options.username: {username!r} is not a Reddit user name; "
                f"expected {cls.expected['username']}"
            )
        subreddit = settings.options.get("subreddit")
        if subreddit is not None and not (
            isinstance(subreddit, str) and _SUBREDDIT.match(_strip(subreddit, "r/"))
        ):
            problems.append(
                f"{prefix}.options.subreddit: {subreddit!r} is not a subreddit name; "
                f"expected {cls.expected['subreddit']}"
            )
        return problems

    @property
    def subreddit(self) -> str | None:
        value = self.options.get("subreddit")
        return _strip(value, "r/") if value else None

    @property
    def user_agent(self) -> str:
        """Reddit's required format: <platform>:<app ID>:<version> (by /u/<username>)."""
        agent = f"python:triage:{__version__}"
        username = self.options.get("username")
        return f"{agent} (by /u/{_strip(username, 'u/')})" if username else agent

    def create_client(self) -> httpx.Client:
        return make_client(user_agent=self.user_agent)

    def pages(self, cursor: str | None) -> Iterator[Page]:
        """Every query in turn, each up to `max_pages` pages; one Page per response."""
        saved = self.load_cursor(cursor)
        state = {query: _window(saved.get(query)) for query in self.queries}
        for query in self.queries:
            yield from self._query_pages(query, state)

    def _query_pages(self, query: str, state: dict[str, dict[str, Any]]) -> Iterator[Page]:
        window = state[query]
        since, names = window.get("since"), set(window.get("names", ()))
        after = window.get("after")
        newest = (window["newest"], set(window["newest_names"])) if after else None
        for _ in range(self.max_pages):
            body = _listing(self.send(self._search(query, after)), self.name)
            children = body["children"]
            fresh = [c for c in children if not _is_old(c, since, names)]
            mentions = self.map_items(fresh, self._mention, label=_label)
            newest = _mark(newest, fresh)
            after = body.get("after") or None
            if not children or not after or len(fresh) < len(children):
                # The walk reached the end or the posts read last time: move the mark.
                if newest is not None:
                    window = {"since": newest[0], "names": sorted(newest[1])}
                else:
                    window = {k: v for k, v in window.items() if k in ("since", "names")}
                state[query] = window
                yield Page(items=mentions, cursor=self.dump_cursor(state))
                return
            window = {
                **{k: v for k, v in window.items() if k in ("since", "names")},
                "after": after,
                **(
                    {"newest": newest[0], "newest_names": sorted(newest[1])}
                    if newest
                    else {"newest": since or 0.0, "newest_names": sorted(names)}
                ),
            }
            state[query] = window
            yield Page(items=mentions, cursor=self.dump_cursor(state))
        self.log.info(
            "query %r: stopped after %d pages (options.max_pages); "
            "the rest is fetched on the next run",
            query,
            self.max_pages,
        )

    def _search(self, query: str, after: str | None) -> httpx.Request:
        params = {"q": query, "sort": "new", "type": "link", "limit": PAGE_SIZE, "raw_json": 1}
        path = "/search"
        if self.subreddit:
            path = f"/r/{self.subreddit}/search"
            params["restrict_sr"] = 1
        if after:
            params["after"] = after
        return self.client.build_request(
            "GET", API + path, params=params, headers={"User-Agent": self.user_agent}
        )

    def send(self, request: httpx.Request) -> httpx.Response:
        """Send with a bearer token; a 401 fetches a new token once before giving up."""
        request.headers["Authorization"] = f"bearer {self._access_token()}"
        try:
            response = super().send(request)
        except AuthError as exc:
            if exc.status != 401:
                # A 403 with a working token is usually the subreddit, not the app.
                what = "were accepted, but the search was refused (is options.subreddit private?)"
                raise self._auth_error(exc, what) from exc
            self._token = None
            request.headers["Authorization"] = f"bearer {self._access_token()}"
            try:
                response = super().send(request)
            except AuthError as again:
                raise self._auth_error(again, "was refused twice with a fresh token") from again
        self._log_rate_limit(response)
        return response

    def _access_token(self) -> str:
        if self._token and monotonic() < self._token_expires:
            return self._token
        secret = f"{self.credentials['client_id']}:{self.credentials['client_secret']}"
        request = self.client.build_request(
            "POST",
            TOKEN_URL,
            data={"grant_type": "client_credentials"},
            headers={
                "Authorization": "Basic " + base64.b64encode(secret.encode()).decode("ascii"),
                "User-Agent": self.user_agent,
            },
        )
        try:
            response = super().send(request)
        except AuthError as exc:
            raise self._auth_error(exc, "were refused by Reddit's token endpoint") from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise PayloadError(f"{self.name}: Reddit's token endpoint did not return JSON") from exc
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            # Reddit answers some bad grants with 200 and {"error": "..."}.
            error = AuthError(f"POST {TOKEN_URL}: no access token; the server said: {body}")
            raise self._auth_error(error, "were refused by Reddit's token endpoint")
        expires_in = body.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 3600.0
        self._token = token
        self._token_expires = monotonic() + max(0.0, lifetime - TOKEN_MARGIN)
        return token

    def _auth_error(self, exc: AuthError, what: str) -> AuthError:
        prefix = f"connectors[{self.name}].credentials"
        return AuthError(
            f"{exc}; {prefix}.client_id and {prefix}.client_secret {what}: expected "
            f"{_CREDENTIALS_HINT}",
            status=exc.status,
            retry_after=exc.retry_after,
        )

    def _mention(self, child: Any) -> NewMention | None:
        if not isinstance(child, Mapping):
            raise PayloadError(f"child is a {type(child).__name__}, not an object")
        if child.get("kind") != "t3":
            return None  # the search asked for posts only; anything else is not ours
        post = child["data"]
        if not isinstance(post, Mapping):
            raise PayloadError("post has no data")
        name = str(post["name"])
        if not name.startswith("t3_"):
            raise PayloadError(f"{name!r} is not a post fullname")
        title = " ".join(str(post["title"]).split())
        selftext = str(post.get("selftext") or "").strip()
        text = f"{title}\n\n{selftext}".strip()
        if not text:
            raise PayloadError("post has no title or text")
        permalink = str(post["permalink"])
        author = post.get("author")
        score, comments = post.get("score"), post.get("num_comments")
        counts = [n for n in (score, comments) if isinstance(n, int) and not isinstance(n, bool)]
        return NewMention(
            source=self.name,
            external_id=name,
            platform=self.platform,
            text=text,
            url=SITE + permalink,
            author_handle=f"u/{author}" if author and author != "[deleted]" else None,
            created_at=datetime.fromtimestamp(_stamp(post["created_utc"]), tz=UTC),
            engagement=sum(counts) if counts else None,
            thread_id=name,
            title=title or None,
            raw={
                key: post.get(key)
                for key in (
                    "id",
                    "name",
                    "subreddit",
                    "subreddit_name_prefixed",
                    "author",
                    "author_fullname",
                    "title",
                    "selftext",
                    "permalink",
                    "url",
                    "domain",
                    "is_self",
                    "over_18",
                    "link_flair_text",
                    "score",
                    "num_comments",
                    "created_utc",
                )
                if key in post
            },
        )

    def _log_rate_limit(self, response: httpx.Response) -> None:
        remaining = response.headers.get("x-ratelimit-remaining")
        try:
            left = float(remaining) if remaining is not None else None
        except ValueError:
            return
        if left is not None and left < LOW_REMAINING:
            self.log.info(
                "%d API calls left; the window resets in %s seconds",
                int(left),
                response.headers.get("x-ratelimit-reset", "?"),
            )


def _strip(value: str, prefix: str) -> str:
    """A name without the u/ or r/ (or /u/, /r/) a user may have typed before it."""
    value = value.strip()
    for lead in ("/" + prefix, prefix):
        if value.lower().startswith(lead):
            return value[len(lead) :]
    return value


def _window(value: Any) -> dict[str, Any]:
    """A saved per-query window; a missing or unreadable one starts from scratch."""
    if not isinstance(value, Mapping):
        return {}
    window: dict[str, Any] = {}
    if _is_stamp(value.get("since")):
        window["since"] = value["since"]
        window["names"] = [n for n in value.get("names") or () if isinstance(n, str)]
    if (
        isinstance(value.get("after"), str)
        and value["after"]
        and _is_stamp(value.get("newest"))
        and isinstance(value.get("newest_names"), list)
    ):
        window["after"] = value["after"]
        window["newest"] = value["newest"]
        window["newest_names"] = [n for n in value["newest_names"] if isinstance(n, str)]
    return window


def _listing(response: httpx.Response, name: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise PayloadError(f"{name}: Reddit search did not return JSON ({exc})") from exc
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("children"), list):
        raise PayloadError(f"{name}: Reddit search did not return a Listing of posts")
    return data


def _post(child: Any) -> Mapping[str, Any] | None:
    if isinstance(child, Mapping) and isinstance(child.get("data"), Mapping):
        return child["data"]
    return None


def _is_old(child: Any, since: float | None, names: set[str]) -> bool:
    """Whether a post was read before: older than `since`, or in its second and already seen."""
    post = _post(child)
    if since is None or post is None or not _is_stamp(post.get("created_utc")):
        return False
    stamp = post["created_utc"]
    return stamp < since or (stamp == since and post.get("name") in names)


Mark = tuple[float, set[str]]


def _mark(mark: Mark | None, children: list[Any]) -> Mark | None:
    """The newest created_utc among `mark` and the posts, with the fullnames of that second."""
    for child in children:
        post = _post(child)
        if post is None or not _is_stamp(post.get("created_utc")):
            continue
        stamp, name = post["created_utc"], str(post.get("name"))
        if mark is None or stamp > mark[0]:
            mark = (stamp, {name})
        elif stamp == mark[0]:
            mark = (stamp, mark[1] | {name})
    return mark


def _is_stamp(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _stamp(value: Any) -> float:
    if not _is_stamp(value):
        raise PayloadError(f"created_utc {value!r} is not a timestamp")
    return float(value)


def _label(child: Any) -> str | None:
    post = _post(child)
    if post is not None and post.get("name"):
        return f"post name={post['name']!r}"
    return None

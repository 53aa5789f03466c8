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

Replies. `POST https://oauth.reddit.com/api/comment` with the form `thing_id` (the post's `t3_`
fullname, or a comment's `t1_`), `text` (Markdown, at most 10,000 characters) and `api_type=json`.
The app-only token cannot comment, so replies use a token of the brand's account, from the same
client_id/client_secret and either the password grant (`credentials.username` and `.password`;
a "script" app with that account as a developer, and no two-factor authentication on it) or
`credentials.refresh_token` (`grant_type=refresh_token`; authorized once with the scopes submit,
read, identity and history and `duration=permanent`; Reddit does not rotate it). The token is kept
for the process (every instance shares it) until shortly before it expires; a 401 fetches a new
one and sends once more. Reddit answers many refusals with HTTP 200 and `json.errors`
(`[code, message, field]`): RATELIMIT becomes RateLimitedError with the wait its message names;
THREAD_LOCKED, TOO_OLD (archived), DELETED_LINK/COMMENT and the like become ReplyNotAllowed.

Idempotency: Reddit has no idempotency key, so `find_reply` lists the account's newest 100
comments (`GET /user/<username>/comments?sort=new`, as the account, which also shows a comment
a spam filter removed) and takes the one whose `parent_id` is the target; the user name comes
from `credentials.username` or `GET /api/v1/me`.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from functools import partial
from time import monotonic
from typing import Any, ClassVar

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
from connectors.reply import ReplyRules
from triage import __version__
from triage.config import ConnectorSettings
from triage.domain import NewMention, ReplyTarget
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
_FULLNAME = re.compile(r"^t[13]_[0-9a-z]+$")
# "you are doing that too much. try again in 5 minutes." and the newer "Take a break for
# 9 minutes before trying again."
_WAIT = re.compile(r"(\d+)\s*(millisecond|second|minute|hour)s?", re.IGNORECASE)
_UNIT_SECONDS = {"millisecond": 0.001, "second": 1.0, "minute": 60.0, "hour": 3600.0}
# json.errors codes that say the target takes no reply; what each means for the agent.
NOT_ALLOWED: Mapping[str, str] = {
    "THREAD_LOCKED": "moderators locked the thread to new comments",
    "TOO_OLD": "the post is archived and takes no comments any more",
    "DELETED_LINK": "the post was deleted",
    "DELETED_COMMENT": "the comment was deleted",
    "DELETED_THING": "it was deleted",
    "SUBREDDIT_NOTALLOWED": "the brand's account may not post in this subreddit",
    "USER_BLOCKED": "one of the two accounts blocked the other",
    "TOO_LONG": "the reply is too long",
    "NO_TEXT": "the reply is empty",
}
_REPLY_GRANTS = (
    "either credentials.username and credentials.password of the brand's account (for a "
    '"script" app listed under that account at https://www.reddit.com/prefs/apps; not with '
    "two-factor authentication), or credentials.refresh_token (from authorizing the app once "
    "as that account with duration=permanent and the scopes submit, read, identity and history)"
)

# The brand account's token and user name, by connector name and grant, for the whole process:
# the act stage builds a connector per reply, and one password grant a day is plenty.
_USER_TOKENS: dict[tuple[str, ...], tuple[str, float]] = {}
_USER_NAMES: dict[tuple[str, ...], str] = {}
_USER_LOCK = threading.Lock()


class RedditConnector(Connector):
    """Posts matching any of `queries`, site-wide or in one subreddit; an app's credentials."""

    type = "reddit"
    requires_queries = True
    platform = "reddit"
    optional_options = ("username", "subreddit")
    required_credentials = ("client_id", "client_secret")
    optional_credentials = ("username", "password", "refresh_token")
    expected: ClassVar[Mapping[str, str]] = {
        "username": "the Reddit account that owns the app, e.g. kestrel_care (for the User-Agent)",
        "subreddit": "a subreddit name such as latvia, to search only there",
        "client_id": _CREDENTIALS_HINT,
        "client_secret": _CREDENTIALS_HINT,
        "password": "the password of the brand's Reddit account named in credentials.username",
        "refresh_token": "a permanent refresh token of the brand's Reddit account with the "
        "submit, read, identity and history scopes",
    }
    reply_rules = ReplyRules(max_length=10_000)

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
        credentials = settings.credentials
        if credentials.get("password") and not credentials.get("username"):
            problems.append(
                f"{prefix}.credentials.username: required with credentials.password; expected "
                "the brand's Reddit user name, e.g. kestrel_care"
            )
        if (
            credentials.get("username")
            and not credentials.get("password")
            and not credentials.get("refresh_token")
        ):
            problems.append(
                f"{prefix}.credentials.password: required with credentials.username (or set "
                f"credentials.refresh_token instead); expected {cls.expected['password']}"
            )
        account = credentials.get("username")
        if account and not _USERNAME.match(_strip(account, "u/")):
            problems.append(
                f"{prefix}.credentials.username: {account!r} is not a Reddit user name; "
                "expected the brand's Reddit user name, e.g. kestrel_care"
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
        try:
            token, lifetime = self._grant({"grant_type": "client_credentials"})
        except AuthError as exc:
            raise self._auth_error(exc, "were refused by Reddit's token endpoint") from exc
        self._token = token
        self._token_expires = monotonic() + max(0.0, lifetime - TOKEN_MARGIN)
        return token

    def _grant(self, data: Mapping[str, str]) -> tuple[str, float]:
        """A bearer token and its lifetime in seconds, from the app's credentials and `data`."""
        secret = f"{self.credentials['client_id']}:{self.credentials['client_secret']}"
        request = self.client.build_request(
            "POST",
            TOKEN_URL,
            data=dict(data),
            headers={
                "Authorization": "Basic " + base64.b64encode(secret.encode()).decode("ascii"),
                "User-Agent": self.user_agent,
            },
        )
        response = super().send(request)
        try:
            body = response.json()
        except ValueError as exc:
            raise PayloadError(f"{self.name}: Reddit's token endpoint did not return JSON") from exc
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            # Reddit answers some bad grants with 200 and {"error": "..."}.
            raise AuthError(f"POST {TOKEN_URL}: no access token; the server said: {body}")
        expires_in = body.get("expires_in")
        return token, float(expires_in) if isinstance(expires_in, int | float) else 3600.0

    def _auth_error(self, exc: AuthError, what: str) -> AuthError:
        prefix = f"connectors[{self.name}].credentials"
        return AuthError(
            f"{exc}; {prefix}.client_id and {prefix}.client_secret {what}: expected "
            f"{_CREDENTIALS_HINT}",
            status=exc.status,
            retry_after=exc.retry_after,
        )

    def reply_unavailable(self) -> str | None:
        if self._user_grant() is not None:
            return None
        return "replying on reddit needs the brand account's authorization: " + self._grants_hint()

    def _user_grant(self) -> dict[str, str] | None:
        """The token request for the brand's account: refresh token first, else its password."""
        refresh = self._credential("refresh_token")
        if refresh:
            return {"grant_type": "refresh_token", "refresh_token": refresh}
        username, password = self._credential("username"), self._credential("password")
        if username and password:
            return {
                "grant_type": "password",
                "username": _strip(username, "u/"),
                "password": password,
            }
        return None

    def _credential(self, key: str) -> str:
        return str(self.credentials.get(key) or "").strip()

    def _user_key(self) -> tuple[str, ...]:
        grant = self._user_grant() or {}
        return (self.name, self._credential("client_id"), *(grant[k] for k in sorted(grant)))

    def _grants_hint(self) -> str:
        return _REPLY_GRANTS.replace("credentials.", f"connectors[{self.name}].credentials.")

    def _user_token(self, *, fresh: bool = False) -> str:
        """The brand account's bearer token, shared by the process until shortly before expiry."""
        grant = self._user_grant()
        if grant is None:
            raise ReplyNotAllowed(self.reply_unavailable() or "no way to reply")
        key = self._user_key()
        with _USER_LOCK:
            cached = _USER_TOKENS.get(key)
            if cached and not fresh and monotonic() < cached[1]:
                return cached[0]
            try:
                token, lifetime = self._grant(grant)
            except (AuthError, PermanentError) as exc:
                raise self._user_auth_error(exc, "were refused by Reddit's token endpoint") from exc
            _USER_TOKENS[key] = (token, monotonic() + max(0.0, lifetime - TOKEN_MARGIN))
            return token

    def _user_auth_error(self, exc: ConnectorError, what: str) -> AuthError:
        prefix = f"connectors[{self.name}].credentials"
        if self._credential("refresh_token"):
            keys = f"{prefix}.refresh_token"
        else:
            keys = f"{prefix}.username and {prefix}.password"
        return AuthError(
            f"{exc}; {keys} (with {prefix}.client_id and client_secret) {what}: expected "
            + self._grants_hint(),
            status=exc.status,
            retry_after=exc.retry_after,
            body=exc.body,
        )

    def _send_as_user(self, request: httpx.Request, *, once: bool) -> httpx.Response:
        """Send with the account's token; a 401 fetches a new token and sends once more."""
        sender = self.send_once if once else partial(Connector.send, self)
        request.headers["User-Agent"] = self.user_agent
        request.headers["Authorization"] = f"bearer {self._user_token()}"
        try:
            response = sender(request)
        except AuthError as exc:
            if exc.status != 401:
                raise self._user_auth_error(
                    exc,
                    "were accepted, but Reddit refused the request: is the account banned from "
                    "the subreddit, or the token missing a scope?",
                ) from exc
            request.headers["Authorization"] = f"bearer {self._user_token(fresh=True)}"
            try:
                response = sender(request)
            except AuthError as again:
                raise self._user_auth_error(
                    again, "were refused twice with a fresh token"
                ) from again
        self._log_rate_limit(response)
        return response

    def post_reply(self, target: ReplyTarget, text: str, *, key: str) -> SentReply:
        """POST /api/comment as the brand's account, under the target post or comment."""
        thing = _fullname(target)
        request = self.client.build_request(
            "POST",
            API + "/api/comment",
            data={"thing_id": thing, "text": text, "api_type": "json"},
        )
        response = self._send_as_user(request, once=True)
        try:
            body = response.json()
            result = body["json"]
            errors = result.get("errors") or []
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PayloadError(
                f"{self.name}: Reddit answered the comment with HTTP {response.status_code} but "
                f"no readable result ({exc!r}); it may have been posted",
                uncertain=True,
            ) from exc
        if errors:
            raise self._comment_error(errors, thing)
        try:
            comment = result["data"]["things"][0]["data"]
            name, permalink = str(comment["name"]), str(comment["permalink"])
        except (KeyError, IndexError, TypeError) as exc:
            raise PayloadError(
                f"{self.name}: Reddit accepted the comment but did not say where it is ({exc})",
                uncertain=True,
            ) from exc
        return SentReply(external_id=name, url=SITE + permalink)

    def _comment_error(self, errors: list[Any], thing: str) -> ConnectorError:
        """The first of Reddit's json.errors as an error the agent can act on."""
        parsed = [
            (str(e[0]), str(e[1]) if len(e) > 1 else "")
            for e in errors
            if isinstance(e, list | tuple) and e
        ]
        code, message = parsed[0] if parsed else ("UNKNOWN", str(errors))
        said = f"{code}: {message}" if message else code
        if code == "RATELIMIT":
            return RateLimitedError(
                f"{self.name}: Reddit is rate limiting comments from the brand's account "
                f"({said}); nothing was posted",
                retry_after=_wait(message),
            )
        if code in NOT_ALLOWED:
            return ReplyNotAllowed(
                f"Reddit refused the reply to {thing} because {NOT_ALLOWED[code]} ({said}); "
                "nothing was posted"
            )
        return PermanentError(f"{self.name}: Reddit refused the comment on {thing} ({said})")

    def find_reply(
        self, target: ReplyTarget, key: str, text: str | None = None
    ) -> SentReply | None:
        """The account's comment under the target among its newest 100; with `text`, that one."""
        thing = _fullname(target)
        username = self._account_name()
        request = self.client.build_request(
            "GET",
            f"{API}/user/{username}/comments",
            params={"limit": PAGE_SIZE, "sort": "new", "raw_json": 1},
        )
        body = _listing(self._send_as_user(request, once=False), self.name, "comments")
        for child in body["children"]:
            comment = _post(child)
            if comment is None or comment.get("parent_id") != thing:
                continue
            if text is not None and " ".join(str(comment.get("body", "")).split()) != " ".join(
                text.split()
            ):
                continue
            if comment.get("name") and comment.get("permalink"):
                return SentReply(
                    external_id=str(comment["name"]),
                    url=SITE + str(comment["permalink"]),
                    already_there=True,
                )
        return None

    def _account_name(self) -> str:
        """The brand account's user name: from the credentials, else GET /api/v1/me."""
        username = self._credential("username")
        if username:
            return _strip(username, "u/")
        key = self._user_key()
        with _USER_LOCK:
            known = _USER_NAMES.get(key)
        if known:
            return known
        request = self.client.build_request("GET", API + "/api/v1/me")
        try:
            me = self._send_as_user(request, once=False).json()
            name = str(me["name"])
        except (ValueError, KeyError, TypeError) as exc:
            raise PayloadError(f"{self.name}: GET /api/v1/me gave no user name ({exc})") from exc
        with _USER_LOCK:
            _USER_NAMES[key] = name
        return name

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


def _listing(response: httpx.Response, name: str, what: str = "posts") -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise PayloadError(f"{name}: {_where(response)} did not return JSON ({exc})") from exc
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("children"), list):
        raise PayloadError(f"{name}: {_where(response)} did not return a Listing of {what}")
    return data


def _where(response: httpx.Response) -> str:
    return f"{response.request.method} {response.request.url.copy_with(query=None)}"


def _fullname(target: ReplyTarget) -> str:
    """The thing_id to answer: a post's t3_ or a comment's t1_ fullname."""
    for value in (target.external_id, target.raw.get("name")):
        if isinstance(value, str) and _FULLNAME.match(value.strip()):
            return value.strip()
    raise ReplyNotAllowed(
        f"{target.external_id!r} is not the fullname of a Reddit post (t3_...) or comment (t1_...)"
    )


def _wait(message: str) -> float | None:
    """Seconds to wait from a RATELIMIT message ("try again in 5 minutes"), if it names them."""
    match = _WAIT.search(message)
    if match is None:
        return None
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]


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

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

Replies. `POST https://api.x.com/2/tweets` with `{"text": ..., "reply": {"in_reply_to_tweet_id":
<post id>}}`, sent as the brand's account: an OAuth 2.0 user access token with the tweet.read,
tweet.write and users.read scopes (`credentials.user_access_token`). Such tokens last two hours;
with `credentials.refresh_token` (the offline.access scope) and `credentials.client_id` (plus
`client_secret` for a confidential client, sent as HTTP basic auth) an expired or refused token is
renewed at `POST https://api.x.com/2/oauth2/token` (grant_type=refresh_token) and the POST is
sent once more (a 401 means nothing was posted). X rotates refresh tokens: each refresh returns a
new one and the old one stops working. The newest pair is kept in this process's memory (shared
by every instance of this connector), and the first rotation logs a warning, since after a
restart the configured refresh token is spent and the app must be authorized again; nothing is
written to disk, and no token is ever logged.

Self-serve API access (every tier but Enterprise) may only reply to posts that @-mention the
brand or quote one of its posts (403 "You can only reply to or quote posts where you are mentioned
or are the author", earlier worded "Reply to this conversation is not allowed because you have not
been mentioned or otherwise engaged by the author..."). With `options.reply_access = "self-serve"`
(the default) `check_reply` refuses other posts before anything is sent, from the mentions and
quoted authors read with the post; the same 403 from X becomes ReplyNotAllowed. Either way the
agent is told to open the post and answer on x.com.

Idempotency: X has no idempotency key, so `find_reply` searches recent posts with
`in_reply_to_tweet_id:<post id> from:<brand_handle>` (app-only bearer token) and takes the match
(the reply with the same text when the text is known, else the newest). Recent search sees 7 days
and indexes a new post within seconds to a minute, so a lookup right after a lost response can
miss it; X then refuses a second identical post as duplicate content, and that 403 is answered
with the reply found by another lookup.
"""

from __future__ import annotations

import base64
import html
import json
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, ClassVar

import httpx

from connectors.base import (
    AuthError,
    Connector,
    ConnectorError,
    Page,
    PayloadError,
    PermanentError,
    ReplyNotAllowed,
    SentReply,
)
from connectors.reply import LengthUnit, ReplyRules
from triage.clock import utcnow
from triage.config import ConnectorSettings
from triage.domain import NewMention, ReplyTarget

SEARCH_URL = "https://api.x.com/2/tweets/search/recent"
TWEETS_URL = "https://api.x.com/2/tweets"
TOKEN_URL = "https://api.x.com/2/oauth2/token"
STATUS_URL = "https://x.com/{}/status/{}"
# X serves any post at this address when the author's user name is unknown.
ANONYMOUS_STATUS_URL = "https://x.com/i/web/status/{}"
TWEET_FIELDS = (
    "created_at,public_metrics,conversation_id,in_reply_to_user_id,referenced_tweets,lang,"
    "author_id,entities"
)
USER_FIELDS = "name,username,public_metrics,verified"
# The quoted and replied-to posts come along in includes.tweets, with their authors in
# includes.users: whether a post quotes the brand decides whether self-serve access may reply.
EXPANSIONS = "author_id,referenced_tweets.id.author_id"
FIND_REPLY_FIELDS = "created_at,author_id,conversation_id,referenced_tweets"
REPLY_ACCESS = ("self-serve", "enterprise")
# Renew a user access token this many seconds before X's stated expiry.
TOKEN_MARGIN = 60.0
# Words of X's 403 details, lower case: the mention-only rule (both wordings X has used; the
# second also covers an author's "who can reply" setting), a gone target, a repeated text, and
# an app-only token used where a user is needed.
NOT_ALLOWED_DETAILS = (
    "only reply to or quote posts where you are mentioned",
    "reply to this conversation is not allowed",
)
GONE_DETAILS = ("deleted or not visible to you",)
DUPLICATE_DETAILS = ("duplicate content",)
UNSUPPORTED_AUTH = "unsupported-authentication"
DEFAULT_MAX_RESULTS = 100
ENGAGEMENT_METRICS = ("like_count", "reply_count", "retweet_count", "quote_count")
# Recent search refuses a since_id older than 7 days; the margin covers clock skew and the run.
SEARCH_WINDOW = timedelta(days=7) - timedelta(minutes=10)
# Post ids are snowflakes: milliseconds since this epoch, shifted left by 22 bits.
SNOWFLAKE_EPOCH_MS = 1_288_834_974_657
LOW_REMAINING = 10
# An @-name in a query, unless negated ("-@kestrel" excludes that account rather than naming it).
_HANDLE = re.compile(r"(?<![\w@-])@(\w{1,15})")
_USERNAME = re.compile(r"^@?(\w{1,15})$")
_LINK = re.compile(r"https?://\S+")
_TOKEN_HINT = (
    "an OAuth 2.0 user access token of the brand's X account with the tweet.read, tweet.write "
    "and users.read scopes (add offline.access for a refresh token), from the app's "
    "authorization code flow with PKCE"
)


@dataclass(slots=True)
class _UserSession:
    """The brand account's newest user token pair in this process (X rotates refresh tokens)."""

    access_token: str
    refresh_token: str | None
    # Epoch seconds after which to renew; None for the configured token, whose age is unknown.
    renew_at: float | None = None


class _RefreshRefused(AuthError):
    """X refused the refresh token; the message already says what to do."""


# By connector name and the configured token pair: every instance in the process shares the
# rotated pair, and a new pair in the config starts afresh.
_SESSIONS: dict[tuple[str, str, str], _UserSession] = {}
_SESSIONS_LOCK = threading.Lock()


class XConnector(Connector):
    """Posts matching any of `queries` from the last 7 days, read with an app-only bearer token."""

    type = "x"
    requires_queries = True
    query_example = '["@kestrel OR kestrel -is:retweet"]'
    platform = "x"
    optional_options = ("max_results", "brand_handle", "reply_access")
    required_credentials = ("bearer_token",)
    optional_credentials = ("user_access_token", "refresh_token", "client_id", "client_secret")
    expected: ClassVar[Mapping[str, str]] = {
        "bearer_token": "the app-only bearer token of an X developer app attached to a Project "
        "with recent search access",
        "max_results": "a whole number of posts per page from 10 to 100",
        "brand_handle": "the brand's X user name that replies are posted as, e.g. kestrel",
        "reply_access": 'one of "self-serve" (the default) or "enterprise"',
        "user_access_token": _TOKEN_HINT,
        "refresh_token": "the refresh token X issued with the user access token "
        "(offline.access scope)",
        "client_id": "the OAuth 2.0 Client ID from the app's Keys and tokens page",
        "client_secret": "the OAuth 2.0 Client Secret from the app's Keys and tokens page "
        "(confidential clients only)",
    }
    reply_rules = ReplyRules(
        max_length=280,
        unit=LengthUnit.X_WEIGHTED,
        note="self-serve API access can only reply to posts that mention or quote the brand",
    )
    reply_credentials = ("user_access_token",)

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
        handle = settings.options.get("brand_handle")
        if handle is not None and not (isinstance(handle, str) and _USERNAME.match(handle.strip())):
            problems.append(
                f"{prefix}.options.brand_handle: {handle!r} is not an X user name; "
                f"expected {cls.expected['brand_handle']}"
            )
        access = settings.options.get("reply_access")
        if access is not None and access not in REPLY_ACCESS:
            problems.append(
                f"{prefix}.options.reply_access: {access!r} is not valid; "
                f"expected {cls.expected['reply_access']}"
            )
        credentials = settings.credentials
        for key in ("refresh_token", "client_secret"):
            if credentials.get(key) and not credentials.get("client_id"):
                problems.append(
                    f"{prefix}.credentials.client_id: required with {key}; "
                    f"expected {cls.expected['client_id']}"
                )
        return problems

    @property
    def brand_handles(self) -> set[str]:
        """The @-names the queries search for: the brand's own accounts."""
        return {name.lower() for query in self.queries for name in _HANDLE.findall(query)}

    @property
    def reply_handle(self) -> str | None:
        """The account replies go out as: options.brand_handle, else the queries' only @-name."""
        value = self.options.get("brand_handle")
        if isinstance(value, str) and value.strip():
            return value.strip().lstrip("@")
        names = {name.lower(): name for q in self.queries for name in _HANDLE.findall(q)}
        return next(iter(names.values())) if len(names) == 1 else None

    @property
    def reply_access(self) -> str:
        return str(self.options.get("reply_access", "self-serve"))

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
            users, included = _users(body), _included_tweets(body)
            mentions = self.map_items(
                tweets, partial(self._mention, users=users, included=included), label=_label
            )
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
            "expansions": EXPANSIONS,
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
            raise PayloadError(
                f"{self.name}: {_where(response)} did not return JSON ({exc})"
            ) from exc
        if not isinstance(body, Mapping):
            raise PayloadError(f"{self.name}: {_where(response)} returned a {type(body).__name__}")
        return body

    def _mention(
        self,
        tweet: Any,
        *,
        users: Mapping[str, Mapping[str, Any]],
        included: Mapping[str, Mapping[str, Any]],
    ) -> NewMention:
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
        quoted = [
            str(username)
            for ref in references
            if isinstance(ref, Mapping) and ref.get("type") == "quoted"
            for username in [
                users.get(str(included.get(str(ref.get("id")), {}).get("author_id")), {}).get(
                    "username"
                )
            ]
            if username
        ]
        handles = self._own_handles()
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
                # Authors of the posts this one quotes: quoting the brand also opens replies.
                "quoted_usernames": quoted,
                "quotes_brand": any(name.lower() in handles for name in quoted),
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

    def _own_handles(self) -> set[str]:
        """The brand's user names, lower case: the queries' @-names and options.brand_handle."""
        handle = self.reply_handle
        return self.brand_handles | ({handle.lower()} if handle else set())

    def reply_unavailable(self) -> str | None:
        reason = super().reply_unavailable()
        if reason or self.reply_handle:
            return reason
        return (
            f"replying on x needs connectors[{self.name}].options.brand_handle "
            f"(the queries name no single @-account); expected {self.expected['brand_handle']}"
        )

    def check_reply(self, target: ReplyTarget, text: str) -> list[str]:
        problems = super().check_reply(target, text)
        if problems or self.reply_access == "enterprise" or self._may_reply_to(target):
            return problems
        return [self._mention_rule(target)]

    def _may_reply_to(self, target: ReplyTarget) -> bool:
        """Whether self-serve access may answer: the post mentions or quotes the brand."""
        raw = target.raw
        if raw.get("mentions_brand") is True or raw.get("quotes_brand") is True:
            return True
        handles = self._own_handles()
        names = [*_list(raw.get("mentioned_usernames")), *_list(raw.get("quoted_usernames"))]
        names.append((target.author_handle or "").lstrip("@"))
        return any(isinstance(name, str) and name.lower() in handles for name in names)

    def _mention_rule(self, target: ReplyTarget, why: str = "this post does neither") -> str:
        where = target.url or ANONYMOUS_STATUS_URL.format(target.external_id)
        return (
            f"X's self-serve API lets @{self.reply_handle} reply only to posts that @-mention it "
            f"or quote one of its posts, and {why}: open {where} and reply on x.com, then mark "
            "the case replied (with Enterprise API access, set "
            f'connectors[{self.name}].options.reply_access = "enterprise")'
        )

    def post_reply(self, target: ReplyTarget, text: str, *, key: str) -> SentReply:
        """POST /2/tweets as the brand, in reply to the target post."""
        tweet_id = _snowflake(target.external_id)
        if tweet_id is None:
            raise ReplyNotAllowed(f"{target.external_id!r} is not an X post id")
        body = {"text": text, "reply": {"in_reply_to_tweet_id": tweet_id}}
        try:
            response = self._post_tweet(body)
        except ConnectorError as exc:
            detail = _problem_detail(exc.body)
            if exc.status == 403 and _has(detail, DUPLICATE_DETAILS):
                # The same text went out recently: most likely our earlier attempt.
                found = self.find_reply(target, key, text=text)
                if found is not None:
                    return found
            refusal = self._reply_error(exc, target, detail)
            if refusal is exc:
                raise
            raise refusal from exc
        try:
            data = _object(self._json(response).get("data"))
        except PayloadError as exc:
            exc.uncertain = True  # X said yes: the reply is out, only its id is unknown
            raise
        reply_id = _snowflake(data.get("id"))
        if reply_id is None:
            raise PayloadError(
                f"{self.name}: X accepted the reply but returned no post id", uncertain=True
            )
        return SentReply(external_id=reply_id, url=STATUS_URL.format(self.reply_handle, reply_id))

    def _post_tweet(self, body: Mapping[str, Any]) -> httpx.Response:
        """One POST /2/tweets; a 401 renews the user token (when it can) and sends once more."""
        session = self._session()
        with _SESSIONS_LOCK:
            if session.renew_at is not None and utcnow().timestamp() >= session.renew_at:
                self._refresh(session)
            token = session.access_token
        try:
            return self.send_once(self._tweet_request(body, token))
        except AuthError as exc:
            if exc.status != 401 or not self._can_refresh():
                raise
        with _SESSIONS_LOCK:
            if session.access_token == token:  # not renewed by another reply meanwhile
                self._refresh(session)
            token = session.access_token
        return self.send_once(self._tweet_request(body, token))

    def _tweet_request(self, body: Mapping[str, Any], token: str) -> httpx.Request:
        return self.client.build_request(
            "POST", TWEETS_URL, json=body, headers={"Authorization": f"Bearer {token}"}
        )

    def _session(self) -> _UserSession:
        configured = self._configured("user_access_token")
        refresh = self._configured("refresh_token")
        key = (self.name, configured, refresh)
        with _SESSIONS_LOCK:
            session = _SESSIONS.get(key)
            if session is None:
                session = _SESSIONS[key] = _UserSession(configured, refresh or None)
            return session

    def _configured(self, key: str) -> str:
        return str(self.credentials.get(key) or "").strip()

    def _can_refresh(self) -> bool:
        return bool(self._configured("refresh_token") and self._configured("client_id"))

    def _refresh(self, session: _UserSession) -> None:
        """Trade the newest refresh token for a new pair; the caller holds _SESSIONS_LOCK."""
        prefix = f"connectors[{self.name}].credentials"
        client_id = self._configured("client_id")
        if not session.refresh_token or not client_id:
            raise AuthError(
                f"{self.name}: the X user access token has expired and there is no "
                f"{prefix}.refresh_token and {prefix}.client_id to renew it; expected "
                f"{_TOKEN_HINT}"
            )
        headers: dict[str, str] = {}
        secret = self._configured("client_secret")
        if secret:
            # Confidential clients authenticate with HTTP basic auth; public ones by client_id.
            pair = f"{client_id}:{secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        request = self.client.build_request(
            "POST",
            TOKEN_URL,
            data={
                "refresh_token": session.refresh_token,
                "grant_type": "refresh_token",
                "client_id": client_id,
            },
            headers=headers,
        )
        try:
            response = Connector.send(self, request)
        except (AuthError, PermanentError) as exc:
            raise _RefreshRefused(
                f"{exc}; X refused the refresh token (each works once: the configured one is "
                "spent once this or an earlier run of triage renewed with it): authorize the app "
                f"again and update {prefix}.user_access_token and {prefix}.refresh_token, and "
                f"check {prefix}.client_id" + (" and client_secret" if secret else ""),
                status=exc.status,
                body=exc.body,
            ) from exc
        body = _object(self._json(response))
        access = _text(body.get("access_token"))
        if access is None:
            raise PayloadError(f"{self.name}: {TOKEN_URL} returned no access_token")
        lifetime = body.get("expires_in")
        seconds = float(lifetime) if isinstance(lifetime, int | float) else 7200.0
        session.access_token = access
        session.renew_at = utcnow().timestamp() + max(0.0, seconds - TOKEN_MARGIN)
        rotated = _text(body.get("refresh_token"))
        if rotated and rotated != session.refresh_token:
            if session.refresh_token == self._configured("refresh_token"):
                self.log.warning(
                    "X rotated the refresh token: %s.refresh_token in the config is now spent. "
                    "This process keeps the new one in memory; after a restart, authorize the "
                    "app again and put the new user_access_token and refresh_token in the config",
                    prefix,
                )
            session.refresh_token = rotated
        self.log.info("renewed the X user access token")

    def _reply_error(self, exc: ConnectorError, target: ReplyTarget, detail: str) -> ConnectorError:
        """What X's refusal of a reply means for the agent; `exc` itself when nothing to add."""
        said = f" (X said: {detail})" if detail else ""
        if exc.status == 403 and _has(detail, NOT_ALLOWED_DETAILS):
            why = "X refused this one (or its author limited who can reply)"
            return ReplyNotAllowed(
                self._mention_rule(target, why) + said, status=403, body=exc.body
            )
        if exc.status == 403 and _has(detail, GONE_DETAILS):
            return ReplyNotAllowed(
                f"the post was deleted or is not visible to @{self.reply_handle}{said}",
                status=403,
                body=exc.body,
            )
        if exc.status == 403 and _has(detail, DUPLICATE_DETAILS):
            return ReplyNotAllowed(
                f"X refused the text as a duplicate of a recent post by @{self.reply_handle}, "
                f"and no reply to this post was found: change the wording{said}",
                status=403,
                body=exc.body,
            )
        if isinstance(exc, AuthError) and not isinstance(exc, _RefreshRefused):
            setting = f"connectors[{self.name}].credentials.user_access_token"
            if UNSUPPORTED_AUTH in (exc.body or ""):
                advice = f"{setting} is an app-only token; replies need a user's token"
            else:
                advice = f"{setting} was refused for posting"
            return AuthError(
                f"{exc}; {advice}: expected {_TOKEN_HINT}",
                status=exc.status,
                retry_after=exc.retry_after,
                body=exc.body,
            )
        return exc

    def find_reply(
        self, target: ReplyTarget, key: str, text: str | None = None
    ) -> SentReply | None:
        """The brand's reply to the target in recent search: the one with `text`, else the newest.

        X has no idempotency key; the act stage does not pass the text, so any reply of the
        brand to this post counts as ours.
        """
        handle = self.reply_handle
        tweet_id = _snowflake(target.external_id)
        if handle is None or tweet_id is None:
            return None
        request = self.client.build_request(
            "GET",
            SEARCH_URL,
            params={
                "query": f"in_reply_to_tweet_id:{tweet_id} from:{handle}",
                "max_results": str(DEFAULT_MAX_RESULTS),
                "tweet.fields": FIND_REPLY_FIELDS,
            },
            headers={"Authorization": f"Bearer {self.credentials['bearer_token'].strip()}"},
        )
        replies = [
            tweet
            for tweet in _list(self._json(self.send(request)).get("data"))
            if isinstance(tweet, Mapping)
            and _snowflake(tweet.get("id"))
            and _replies_to(tweet, tweet_id)
        ]
        if text is not None:
            wanted = _comparable(text)
            replies = [t for t in replies if _comparable(str(t.get("text") or "")) == wanted]
        if not replies:
            return None
        # Search answers newest first.
        reply_id = str(_snowflake(replies[0].get("id")))
        return SentReply(
            external_id=reply_id,
            url=STATUS_URL.format(handle, reply_id),
            already_there=True,
        )


def _users(body: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    includes = body.get("includes")
    users = includes.get("users") if isinstance(includes, Mapping) else None
    return {
        str(user["id"]): user
        for user in users or []
        if isinstance(user, Mapping) and user.get("id")
    }


def _included_tweets(body: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    includes = body.get("includes")
    tweets = includes.get("tweets") if isinstance(includes, Mapping) else None
    return {
        str(tweet["id"]): tweet
        for tweet in tweets or []
        if isinstance(tweet, Mapping) and tweet.get("id")
    }


def _where(response: httpx.Response) -> str:
    return f"{response.request.method} {response.request.url.copy_with(query=None)}"


def _problem_detail(body: str | None) -> str:
    """The `detail` (else `title`) of X's problem JSON in an error body; '' if there is none."""
    try:
        problem = json.loads(body or "")
    except ValueError:
        return ""
    if not isinstance(problem, Mapping):
        return ""
    return str(problem.get("detail") or problem.get("title") or "")


def _has(detail: str, phrases: tuple[str, ...]) -> bool:
    lowered = detail.lower()
    return any(phrase in lowered for phrase in phrases)


def _replies_to(tweet: Mapping[str, Any], tweet_id: str) -> bool:
    """Whether a post answers `tweet_id`; trusts the search when references are missing."""
    references = [r for r in _list(tweet.get("referenced_tweets")) if isinstance(r, Mapping)]
    if not references:
        return True
    return any(r.get("type") == "replied_to" and str(r.get("id")) == tweet_id for r in references)


def _comparable(text: str) -> str:
    """Text as X shows it back, for comparing: entities unescaped, links (t.co) blanked."""
    return " ".join(_LINK.sub("<link>", html.unescape(text)).split())


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

"""Bluesky posts matching the configured queries, through the AT Protocol search API.

The connector logs in with the brand account's handle and an app password
(`com.atproto.server.createSession`), keeps the access token on the instance, refreshes it with
the refresh token when the server reports it expired (400 ExpiredToken, or 401) and logs in again
once if the refresh is refused. Each query is searched with
`app.bsky.feed.searchPosts?q=...&sort=latest&limit=100&since=<ISO>`, following the response's
`cursor` to older pages.

Cursor and crash safety. The saved cursor maps each query to the newest `createdAt` seen, sent as
`since` on the next run (inclusive, so the boundary post is read again and deduped by the store).
Results arrive newest first, so a query's mark moves only when its walk finishes: every page
before that carries the cursor unchanged, and a crash mid-walk re-reads the same pages next run.
A walk cut short by `options.max_pages` does not move the mark either. The first run of a query
looks back FIRST_RUN_LOOKBACK. Rate limits: Bluesky sends RateLimit-Remaining/-Reset (epoch
seconds), which triage.http reads for a 429.

Notifications (`options.notifications`, on by default): `app.bsky.notification.listNotifications`
with reasons mention, reply and quote: posts that address the brand without matching a query.
They have their own mark in the cursor, move it the same crash-safe way, and a post found both
ways is stored once (its uri is the id).

Replies: `com.atproto.repo.createRecord` on the account's repo, sent to the account's own PDS
(the `#atproto_pds` endpoint of the session's DID document, else `options.service`): an
`app.bsky.feed.post` whose `reply` cites the thread's root and the mention itself as parent (uri
and cid, as stored with the mention), with link facets so URLs are clickable (byte offsets in
UTF-8), 300 graphemes at most.
Idempotent by construction: the record key is a TID derived from the reply's idempotency key, so
a retry writes the same record key; the PDS refuses the second write and `find_reply`
(`com.atproto.repo.getRecord`) returns the reply that is already there.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
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

DEFAULT_SERVICE = "https://bsky.social"
CREATE_SESSION = "/xrpc/com.atproto.server.createSession"
REFRESH_SESSION = "/xrpc/com.atproto.server.refreshSession"
SEARCH_POSTS = "/xrpc/app.bsky.feed.searchPosts"
LIST_NOTIFICATIONS = "/xrpc/app.bsky.notification.listNotifications"
NOTIFICATION_REASONS = ("mention", "reply", "quote")
# The notifications' mark in the cursor; queries are stripped, so none starts with a space.
NOTIFICATIONS_KEY = " notifications"
CREATE_RECORD = "/xrpc/com.atproto.repo.createRecord"
GET_RECORD = "/xrpc/com.atproto.repo.getRecord"
POST_COLLECTION = "app.bsky.feed.post"
# Base32-sortable, the alphabet of TIDs (record keys that sort by time).
TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
# A derived TID's time falls in a window after this moment (microseconds since the epoch).
TID_EPOCH_US = 1_672_531_200_000_000  # 2023-01-01
_URL = re.compile(r"https?://[^\s<>\"]+[^\s<>\".,;:!?)\]']")
POST_URL = "https://bsky.app/profile/{handle}/post/{rkey}"
PAGE_SIZE = 100
FIRST_RUN_LOOKBACK = timedelta(days=7)
COUNT_KEYS = ("likeCount", "replyCount", "repostCount", "quoteCount")


class BlueskyConnector(Connector):
    """Posts matching any of `queries`, searched as the brand's Bluesky account."""

    type = "bluesky"
    requires_queries = True
    platform = "bluesky"
    optional_options = ("service", "notifications")
    required_credentials = ("identifier", "app_password")
    expected: ClassVar[Mapping[str, str]] = {
        "service": "the https:// address of the account's PDS or entryway, e.g. https://bsky.social",
        "identifier": "the account's handle, e.g. kestrel.bsky.social",
        "app_password": "an app password of the account (Settings > App passwords)",
        "notifications": "true (default) to also read mentions, replies and quotes of the "
        "account, or false",
    }
    reply_rules: ClassVar[ReplyRules | None] = ReplyRules(
        max_length=300, unit=LengthUnit.GRAPHEMES, note="links in the reply become clickable"
    )
    reply_is_idempotent = True

    def __init__(self, settings: ConnectorSettings, **kwargs: Any):
        super().__init__(settings, **kwargs)
        self._access: str | None = None
        self._refresh: str | None = None
        self._did: str | None = None
        self._handle: str | None = None
        # The account's own PDS, from the session's DID document: repo writes go there.
        self._pds: str | None = None

    def post_reply(self, target: ReplyTarget, text: str, *, key: str) -> SentReply:
        parent = _strong_ref(target.raw)
        if parent is None:
            raise ReplyNotAllowed(
                "this mention was stored without its uri and cid; "
                "open it on Bluesky and reply there"
            )
        reply = target.raw.get("reply")
        root = _strong_ref(reply.get("root")) if isinstance(reply, Mapping) else None
        record: dict[str, Any] = {
            "$type": POST_COLLECTION,
            "text": text,
            "createdAt": _iso(utcnow()),
            "reply": {"root": root or parent, "parent": parent},
        }
        facets = link_facets(text)
        if facets:
            record["facets"] = facets
        langs = target.raw.get("langs")
        if isinstance(langs, list) and langs:
            record["langs"] = [str(lang) for lang in langs[:3]]
        rkey = tid_for(key)
        if self._access is None:
            self._create_session()
        try:
            response = self._create(rkey, record)
        except PermanentError as exc:
            if exc.status != 400 or _error_name(exc) in ("ExpiredToken", "InvalidToken"):
                raise
            # The record key is taken: an earlier attempt of this reply got through.
            found = self.find_reply(target, key)
            if found is None:
                raise ReplyNotAllowed(f"Bluesky refused the reply: {_error_message(exc)}") from exc
            return found
        body = _json_object(response, self.name)
        uri = body.get("uri")
        if not isinstance(uri, str) or not uri:
            raise PayloadError(f"{self.name}: createRecord answered without a uri", uncertain=True)
        return SentReply(external_id=uri, url=self._post_url(rkey))

    def find_reply(
        self, target: ReplyTarget, key: str, text: str | None = None
    ) -> SentReply | None:
        """The record this key writes, if it exists: the key decides the record key."""
        rkey = tid_for(key)
        if self._access is None:
            self._create_session()
        params = {"repo": self._did or "", "collection": POST_COLLECTION, "rkey": rkey}
        try:
            response = self._get(GET_RECORD, params, pds=True)
        except PermanentError as exc:
            if exc.status in (400, 404) and _error_name(exc) in ("RecordNotFound", ""):
                return None
            raise
        body = _json_object(response, self.name)
        return SentReply(
            external_id=str(body.get("uri") or ""), url=self._post_url(rkey), already_there=True
        )

    def _create(self, rkey: str, record: dict[str, Any]) -> httpx.Response:
        def request() -> httpx.Request:
            payload = {"repo": self._did, "collection": POST_COLLECTION, "rkey": rkey}
            return self._request(
                "POST", CREATE_RECORD, self._access, json={**payload, "record": record}, pds=True
            )

        try:
            return self.send_once(request())
        except ConnectorError as exc:
            if not _expired(exc):
                raise
        # An expired token is a refusal: nothing was written, so sending again is safe.
        self._renew_session()
        return self.send_once(request())

    def _post_url(self, rkey: str) -> str:
        handle = self._handle or self.credentials["identifier"].strip()
        return POST_URL.format(handle=handle, rkey=rkey)

    @classmethod
    def check_settings(cls, settings: ConnectorSettings) -> list[str]:
        return super().check_settings(settings) + cls.check_https_option(settings, "service")

    @property
    def service(self) -> str:
        return str(self.options.get("service") or DEFAULT_SERVICE).strip().rstrip("/")

    def pages(self, cursor: str | None) -> Iterator[Page]:
        """Every query in turn, each up to `max_pages` pages; one Page per response."""
        saved = self.load_cursor(cursor)
        state: dict[str, str] = {}
        for query in self.queries:
            since = _parse_time(saved[query]) if isinstance(saved.get(query), str) else None
            state[query] = _iso(since or utcnow() - FIRST_RUN_LOOKBACK)
        if self.options.get("notifications", True) is not False:
            mark = _parse_time(saved.get(NOTIFICATIONS_KEY))
            state[NOTIFICATIONS_KEY] = _iso(mark or utcnow() - FIRST_RUN_LOOKBACK)
        # A post both found by a query and addressed to the brand is yielded once per run.
        seen: set[str] = set()
        for query in self.queries:
            for page in self._query_pages(query, state):
                seen.update(mention.external_id for mention in page.items)
                yield page
        if NOTIFICATIONS_KEY in state:
            for page in self._notification_pages(state):
                items = [mention for mention in page.items if mention.external_id not in seen]
                seen.update(mention.external_id for mention in items)
                yield replace(page, items=items)

    def _notification_pages(self, state: dict[str, str]) -> Iterator[Page]:
        """Mentions, replies and quotes of the brand account, newest first, down to the mark."""
        since = _parse_time(state[NOTIFICATIONS_KEY])
        newest = since
        token: str | None = None
        for _ in range(self.max_pages):
            params: list[tuple[str, str]] = [("limit", str(PAGE_SIZE))]
            params += [("reasons", reason) for reason in NOTIFICATION_REASONS]
            if token:
                params.append(("cursor", token))
            body = _json_object(self._get(LIST_NOTIFICATIONS, params), self.name)
            notes = body.get("notifications")
            if not isinstance(notes, list):
                raise PayloadError(f"{self.name}: listNotifications returned no list")
            fresh = [
                n
                for n in notes
                if isinstance(n, Mapping)
                and n.get("reason") in NOTIFICATION_REASONS
                and _sort_key(_parse_time(n.get("indexedAt"))) > _sort_key(since)
            ]
            mentions = self.map_items(fresh, self._notification_mention, label=_label)
            newest = max([newest, *(_parse_time(n.get("indexedAt")) for n in fresh)], key=_sort_key)
            next_token = body.get("cursor") if isinstance(body.get("cursor"), str) else None
            reached = any(
                _sort_key(_parse_time(n.get("indexedAt"))) <= _sort_key(since)
                for n in notes
                if isinstance(n, Mapping)
            )
            done = not notes or not next_token or next_token == token or reached
            if done:
                state[NOTIFICATIONS_KEY] = _iso(min(_sort_key(newest), utcnow()))
            yield Page(items=mentions, cursor=self.dump_cursor(state))
            if done:
                return
            token = next_token

    def _notification_mention(self, note: Mapping[str, Any]) -> NewMention:
        """A notification carries the post's uri, cid, author and record, as a search hit does."""
        post = {key: note.get(key) for key in ("uri", "cid", "author", "record", "indexedAt")}
        mention = self._mention(post)
        return replace(mention, raw={**mention.raw, "reason": note.get("reason")})

    def _query_pages(self, query: str, state: dict[str, str]) -> Iterator[Page]:
        since = state[query]
        newest = _parse_time(since)
        token: str | None = None
        for _ in range(self.max_pages):
            params = {"q": query, "sort": "latest", "limit": str(PAGE_SIZE), "since": since}
            if token:
                params["cursor"] = token
            body = _json(self._get(SEARCH_POSTS, params), self.name)
            posts = body["posts"]
            mentions = self.map_items(posts, self._mention, label=_label)
            newest = max([newest, *(_post_time(post) for post in posts)], key=_sort_key)
            next_token = body.get("cursor") if isinstance(body.get("cursor"), str) else None
            done = not posts or not next_token or next_token == token
            if done:
                # The walk is complete: only now is it safe to move this query's mark. createdAt
                # is set by the client, so a clock ahead of ours must not push it into the future.
                state[query] = _iso(min(_sort_key(newest), utcnow()))
            yield Page(items=mentions, cursor=self.dump_cursor(state))
            if done:
                return
            token = next_token
        self.log.info(
            "query %r: stopped after %d pages (options.max_pages); "
            "the rest is fetched on the next run",
            query,
            self.max_pages,
        )

    def _get(
        self,
        path: str,
        params: Mapping[str, str] | list[tuple[str, str]],
        *,
        pds: bool = False,
    ) -> httpx.Response:
        """An authenticated GET; an expired access token is refreshed (or re-created) once."""
        if self._access is None:
            self._create_session()
        try:
            return self.send(self._request("GET", path, self._access, params=params, pds=pds))
        except ConnectorError as exc:
            if not _expired(exc):
                raise
        self._renew_session()
        return self.send(self._request("GET", path, self._access, params=params, pds=pds))

    def _request(
        self, method: str, path: str, token: str | None, *, pds: bool = False, **kwargs: Any
    ) -> httpx.Request:
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        base = (self._pds or self.service) if pds else self.service
        return self.client.build_request(method, base + path, headers=headers, **kwargs)

    def _create_session(self) -> None:
        payload = {
            "identifier": self.credentials["identifier"].strip(),
            "password": self.credentials["app_password"],
        }
        try:
            response = self.send(self._request("POST", CREATE_SESSION, None, json=payload))
        except AuthError as exc:
            raise AuthError(
                f"{exc}; {self.service} refused the login: check "
                f"connectors[{self.name}].credentials.identifier (the handle, e.g. "
                f"kestrel.bsky.social) and connectors[{self.name}].credentials.app_password "
                "(Settings > App passwords)",
                status=exc.status,
                retry_after=exc.retry_after,
            ) from exc
        self._store_session(response)

    def _renew_session(self) -> None:
        """Refresh the session; when the refresh token is refused too, log in again."""
        if self._refresh:
            try:
                response = self.send(self._request("POST", REFRESH_SESSION, self._refresh))
                self._store_session(response)
                return
            except (AuthError, PermanentError, PayloadError) as exc:
                # An expired or revoked refresh token; a fresh login is the only way back in.
                self.log.info("session refresh refused (%s); logging in again", exc)
        self._create_session()

    def _store_session(self, response: httpx.Response) -> None:
        body = _json_object(response, self.name)
        access, refresh = body.get("accessJwt"), body.get("refreshJwt")
        if not isinstance(access, str) or not access:
            raise PayloadError(f"{self.name}: {self.service} returned a session without accessJwt")
        self._access = access
        self._refresh = refresh if isinstance(refresh, str) and refresh else None
        did, handle = body.get("did"), body.get("handle")
        self._did = did if isinstance(did, str) and did else self._did
        self._handle = handle if isinstance(handle, str) and handle else self._handle
        self._pds = _pds_endpoint(body.get("didDoc")) or self._pds

    def _mention(self, post: Mapping[str, Any]) -> NewMention:
        if not isinstance(post, Mapping):
            raise PayloadError(f"post is a {type(post).__name__}, not an object")
        uri = str(post["uri"])
        rkey = _rkey(uri)
        author, record = post["author"], post["record"]
        if not isinstance(author, Mapping) or not isinstance(record, Mapping):
            raise PayloadError(f"post {uri} has no author or record")
        handle = str(author["handle"]).strip()
        if not handle:
            raise PayloadError(f"post {uri} has an author without a handle")
        text = str(record.get("text") or "").strip()
        if not text:
            raise PayloadError(f"post {uri} has no text")
        created = _post_time(post)
        if created is None:
            raise PayloadError(f"post {uri} has no createdAt or indexedAt")
        reply = record.get("reply") if isinstance(record.get("reply"), Mapping) else None
        root = _ref_uri(reply, "root")
        parent = _ref_uri(reply, "parent")
        counts = [post.get(key) for key in COUNT_KEYS]
        numbers = [n for n in counts if isinstance(n, int) and not isinstance(n, bool)]
        return NewMention(
            source=self.name,
            external_id=uri,
            platform=self.platform,
            text=text,
            url=POST_URL.format(handle=handle, rkey=rkey),
            author_name=str(author.get("displayName") or "").strip() or None,
            author_handle="@" + handle,
            created_at=created,
            engagement=sum(numbers) if numbers else None,
            thread_id=root or uri,
            parent_id=parent,
            # cid and the reply refs are kept because a reply must cite root and parent uri+cid.
            raw={
                "uri": uri,
                "cid": post.get("cid"),
                "author_did": author.get("did"),
                "author_handle": handle,
                "author_avatar": author.get("avatar"),
                "created_at": record.get("createdAt"),
                "indexed_at": post.get("indexedAt"),
                "reply": reply,
                "langs": record.get("langs"),
                **{key: post.get(key) for key in COUNT_KEYS},
            },
        )


def _expired(exc: ConnectorError) -> bool:
    """Whether the server refused the access token as expired: 401, or 400 ExpiredToken."""
    if isinstance(exc, AuthError) and exc.status == 401:
        return True
    return exc.status == 400 and _error_name(exc) == "ExpiredToken"


def _error_name(exc: ConnectorError) -> str:
    """The XRPC error name of a refusal ({"error": "ExpiredToken", "message": ...})."""
    try:
        body = json.loads(exc.body or "")
    except ValueError:
        return ""
    return str(body.get("error") or "") if isinstance(body, dict) else ""


def _error_message(exc: ConnectorError) -> str:
    try:
        body = json.loads(exc.body or "")
    except ValueError:
        body = {}
    if isinstance(body, dict) and (body.get("message") or body.get("error")):
        return str(body.get("message") or body.get("error"))
    return (exc.body or str(exc))[:200]


def tid_for(key: str) -> str:
    """A valid TID (13 base32-sortable characters) that depends only on `key`."""
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    # A timestamp within about 100 days after TID_EPOCH_US, and a 10-bit clock id.
    micros = TID_EPOCH_US + (digest >> 10) % (1 << 43)
    value = (micros << 10) | (digest & 0x3FF)
    return "".join(TID_ALPHABET[(value >> shift) & 31] for shift in range(60, -1, -5))


def link_facets(text: str) -> list[dict[str, Any]]:
    """Link facets for every URL in `text`, with byte offsets into its UTF-8 encoding."""
    facets = []
    for match in _URL.finditer(text):
        start = len(text[: match.start()].encode("utf-8"))
        end = start + len(match.group().encode("utf-8"))
        facets.append(
            {
                "index": {"byteStart": start, "byteEnd": end},
                "features": [{"$type": "app.bsky.richtext.facet#link", "uri": match.group()}],
            }
        )
    return facets


def _pds_endpoint(did_doc: Any) -> str | None:
    """The #atproto_pds service endpoint of a DID document, when it is an https address."""
    services = did_doc.get("service") if isinstance(did_doc, Mapping) else None
    for service in services if isinstance(services, list) else []:
        if not isinstance(service, Mapping) or not str(service.get("id", "")).endswith(
            "#atproto_pds"
        ):
            continue
        endpoint = service.get("serviceEndpoint")
        if isinstance(endpoint, str) and endpoint.startswith("https://"):
            return endpoint.rstrip("/")
    return None


def _strong_ref(value: Any) -> dict[str, str] | None:
    """{"uri", "cid"} of a post, from the stored mention or its reply refs."""
    if not isinstance(value, Mapping):
        return None
    uri, cid = value.get("uri"), value.get("cid")
    if isinstance(uri, str) and uri and isinstance(cid, str) and cid:
        return {"uri": uri, "cid": cid}
    return None


def _json_object(response: httpx.Response, name: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise PayloadError(
            f"{name}: {response.url.copy_with(query=None)} did not return JSON ({exc}); "
            f"check connectors[{name}].options.service"
        ) from exc
    if not isinstance(body, dict):
        raise PayloadError(f"{name}: {response.url.copy_with(query=None)} returned no object")
    return body


def _json(response: httpx.Response, name: str) -> dict[str, Any]:
    body = _json_object(response, name)
    if not isinstance(body.get("posts"), list):
        raise PayloadError(f"{name}: Bluesky search returned no list of posts")
    return body


def _rkey(uri: str) -> str:
    """The record key of an at://did/app.bsky.feed.post/rkey uri."""
    parts = uri.removeprefix("at://").split("/")
    if not uri.startswith("at://") or len(parts) != 3 or parts[1] != "app.bsky.feed.post":
        raise PayloadError(f"uri {uri!r} is not a post uri")
    if not parts[2]:
        raise PayloadError(f"uri {uri!r} has no record key")
    return parts[2]


def _ref_uri(reply: Mapping[str, Any] | None, key: str) -> str | None:
    ref = reply.get(key) if reply else None
    uri = ref.get("uri") if isinstance(ref, Mapping) else None
    return uri if isinstance(uri, str) and uri else None


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _post_time(post: Any) -> datetime | None:
    """createdAt of the record, else the time the AppView indexed the post."""
    if not isinstance(post, Mapping):
        return None
    record = post.get("record")
    created = _parse_time(record.get("createdAt")) if isinstance(record, Mapping) else None
    return created or _parse_time(post.get("indexedAt"))


def _sort_key(moment: datetime | None) -> datetime:
    return moment or datetime.min.replace(tzinfo=UTC)


def _iso(moment: datetime | None) -> str:
    value = (moment or utcnow()).astimezone(UTC)
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _label(post: Any) -> str | None:
    if isinstance(post, Mapping) and post.get("uri"):
        return f"post uri={post['uri']!r}"
    return None

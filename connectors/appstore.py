"""App Store reviews of one app: the App Store Connect API with a key, else Apple's public feed.

With an App Store Connect API key (`credentials.issuer_id`, `key_id` and `private_key`, the
.p8 file's text, or `options.private_key_path`): `GET https://api.appstoreconnect.apple.com/v1/
apps/{app_id}/customerReviews?sort=-createdDate&limit=200`, following `links.next`. Requests
carry an ES256 JWT (header kid, claims iss, iat, exp at most 20 minutes on, aud
"appstoreconnect-v1"), made once and reused until a minute before it expires. This mode can
answer: `POST /v1/customerReviewResponses` (one response per review; a new one replaces the old,
so a repeat is harmless), 5,970 characters of plain text; Apple shows it after a short review.

Without a key: the public customer-reviews JSON feed, per country in `options.countries`
(default ["us"]): `https://itunes.apple.com/{country}/rss/customerreviews/page={n}/id={app_id}/
sortby=mostrecent/json`, pages 1..10 of 50 (all Apple serves). Read-only: agents answer in App
Store Connect and mark the case replied.

Cursor and crash safety: reviews arrive newest first, so (as in mastodon.py) saving the newest
time after page 1 would make a crash on page 2 skip pages 2..n for good. The cursor keeps the
newest time seen and the ids at exactly that time (`{"api", "api_ids"}`, or per country under
`feed`), and every page but the last of a walk keeps it unchanged; the walk stops at the first
page that reaches the mark, and only then is it moved. A crash mid-walk re-reads the same pages
and the store dedupes. A walk cut short by `options.max_pages` also leaves it unchanged (logged).

Rate limits: Apple publishes none for the feed; App Store Connect answers 429 when an hourly
quota is spent (`X-Rate-Limit` header), and triage.http waits per Retry-After.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from connectors.base import (
    AuthError,
    Connector,
    Page,
    PayloadError,
    PermanentError,
    ReplyNotAllowed,
    SentReply,
    json_object,
    parse_time,
)
from connectors.reply import ReplyRules
from triage.clock import utcnow
from triage.config import ConnectorSettings
from triage.domain import NewMention, ReplyTarget

ASC = "https://api.appstoreconnect.apple.com"
FEED = "https://itunes.apple.com/{country}/rss/customerreviews/page={page}/id={app}/sortby=mostrecent/json"
STORE_URL = "https://apps.apple.com/{country}/app/id{app}?see-all=reviews"
# Without a known store code, the country-less page sends each reader to their own store.
ANY_STORE_URL = "https://apps.apple.com/app/id{app}?see-all=reviews"
FEED_PAGES = 10
TOKEN_SECONDS = 20 * 60  # Apple's maximum
_COUNTRY = re.compile(r"^[a-z]{2}$")
KEY_OPTIONS = ("issuer_id", "key_id")
# ISO 3166 alpha-3 territory (App Store Connect) to the alpha-2 store code in URLs.
TERRITORIES = {
    "USA": "us", "GBR": "gb", "DEU": "de", "FRA": "fr", "ESP": "es", "PRT": "pt", "BRA": "br",
    "POL": "pl", "LVA": "lv", "ITA": "it", "CAN": "ca", "AUS": "au", "IRL": "ie", "AUT": "at",
    "CHE": "ch", "NLD": "nl", "BEL": "be", "MEX": "mx", "LTU": "lt", "EST": "ee",
}  # fmt: skip


class AppStoreConnector(Connector):
    """Reviews of one iOS app; answered through App Store Connect when a key is configured."""

    type = "appstore"
    platform = "appstore"
    uses_queries = False
    required_options = ("app_id",)
    optional_options = ("countries", "private_key_path")
    optional_credentials = ("issuer_id", "key_id", "private_key")
    expected: ClassVar[Mapping[str, str]] = {
        "app_id": "the app's numeric Apple ID, e.g. 1451234567 (App Store Connect > App "
        "Information, or the number in its App Store link)",
        "countries": 'a list of two-letter store codes for the public feed, e.g. ["us", "lv"]',
        "issuer_id": "the Issuer ID shown in App Store Connect > Users and Access > "
        "Integrations > App Store Connect API",
        "key_id": "the Key ID of an API key with the Customer Support role",
        "private_key": "the text of the key's AuthKey_<KEY_ID>.p8 file (an EC P-256 PEM key)",
        "private_key_path": "the path of the key's AuthKey_<KEY_ID>.p8 file",
    }
    default_interval = 60 * 60.0
    reply_rules: ClassVar[ReplyRules | None] = ReplyRules(
        max_length=5970,
        links=False,
        private_messages=False,
        note="one response per review; a new one replaces the old; Apple publishes it after "
        "a short review",
    )
    reply_is_idempotent = True

    def __init__(self, settings: ConnectorSettings, **kwargs: Any):
        super().__init__(settings, **kwargs)
        self._jwt: str | None = None
        self._jwt_expires = 0.0

    @classmethod
    def check_settings(cls, settings: ConnectorSettings) -> list[str]:
        problems = super().check_settings(settings)
        prefix = f"connectors[{settings.name}]"
        app_id = settings.options.get("app_id")
        if app_id is not None and not str(app_id).strip().isdigit():
            problems.append(
                f"{prefix}.options.app_id: {app_id!r} is not valid; "
                f"expected {cls.expected['app_id']}"
            )
        countries = settings.options.get("countries")
        if countries is not None and not (
            isinstance(countries, list)
            and countries
            and all(isinstance(c, str) and _COUNTRY.match(c.strip().lower()) for c in countries)
        ):
            problems.append(
                f"{prefix}.options.countries: {countries!r} is not valid; "
                f"expected {cls.expected['countries']}"
            )
        given = {key for key in KEY_OPTIONS if str(settings.credentials.get(key) or "").strip()}
        has_key = bool(
            str(settings.credentials.get("private_key") or "").strip()
            or settings.options.get("private_key_path")
        )
        if given or has_key:
            for key in KEY_OPTIONS:
                if key not in given:
                    problems.append(
                        f"{prefix}.credentials.{key}: required with an App Store Connect key; "
                        f"expected {cls.expected[key]}"
                    )
            if not has_key:
                problems.append(
                    f"{prefix}.credentials.private_key: required with issuer_id and key_id; "
                    f"expected {cls.expected['private_key']} (or options.private_key_path)"
                )
            else:
                try:
                    _signing_key(settings)
                except ValueError as exc:
                    problems.append(f"{prefix}.credentials.private_key: {exc}")
        return problems

    @property
    def app_id(self) -> str:
        return str(self.options["app_id"]).strip()

    @property
    def uses_api(self) -> bool:
        """Whether an App Store Connect key is configured (else the public feed is read)."""
        return bool(str(self.credentials.get("key_id") or "").strip())

    def reply_unavailable(self) -> str | None:
        if not self.uses_api:
            return (
                "reviews read from Apple's public feed cannot be answered; App Store replies "
                "need an App Store Connect API key with the Customer Support role: add "
                f"connectors[{self.name}].credentials.issuer_id, key_id and private_key (or "
                f"connectors[{self.name}].options.private_key_path); until then answer in App "
                "Store Connect and mark the case replied"
            )
        return super().reply_unavailable()

    def pages(self, cursor: str | None) -> Iterator[Page]:
        saved = self.load_cursor(cursor)
        if self.uses_api:
            yield from self._api_pages(saved)
        else:
            yield from self._feed_pages(saved)

    # -- App Store Connect --------------------------------------------------------------------

    def _api_pages(self, saved: dict[str, Any]) -> Iterator[Page]:
        mark = Mark.load(saved.get("api"), saved.get("api_ids"))
        url: str | None = f"{ASC}/v1/apps/{self.app_id}/customerReviews"
        params: dict[str, str] | None = {"sort": "-createdDate", "limit": "200"}
        unchanged = self.dump_cursor(saved) if saved else None
        seen = mark
        for _ in range(self.max_pages):
            body = self._object(self._asc("GET", url or "", params=params))
            data = body.get("data")
            if not isinstance(data, list):
                raise PayloadError(f"{self.name}: customerReviews returned no data list")
            stamped = [(r, _review_time(r), _review_id(r)) for r in data]
            fresh = [r for r, at, rid in stamped if mark.is_new(at, rid)]
            mentions = self.map_items(fresh, self._api_mention, label=_label)
            seen = seen.after(stamped)
            links = body.get("links") if isinstance(body.get("links"), Mapping) else {}
            url, params = links.get("next"), None
            reached = any(mark.reached(at, rid) for _, at, rid in stamped)
            if not data or not url or reached:
                final = {**saved, **seen.dump("api")}
                yield Page(items=mentions, cursor=self.dump_cursor(final) if seen.at else None)
                return
            yield Page(items=mentions, cursor=unchanged)
        self.log.info(
            "stopped after %d pages (options.max_pages) before reaching the cursor; the next "
            "run starts from the newest review again",
            self.max_pages,
        )

    def _api_mention(self, review: Mapping[str, Any]) -> NewMention:
        if not isinstance(review, Mapping):
            raise PayloadError(f"review is a {type(review).__name__}, not an object")
        review_id = str(review["id"])
        attributes = review["attributes"]
        body = str(attributes.get("body") or "").strip()
        title = str(attributes.get("title") or "").strip() or None
        if not body and not title:
            raise PayloadError(f"review {review_id} has no text")
        created = _review_time(review)
        if created is None:
            raise PayloadError(f"review {review_id} has no createdDate")
        territory = str(attributes.get("territory") or "")
        return NewMention(
            source=self.name,
            external_id=review_id,
            platform=self.platform,
            text=body or title or "",
            title=title if body else None,
            url=_store_url(self.app_id, TERRITORIES.get(territory)),
            author_name=str(attributes.get("reviewerNickname") or "").strip() or None,
            created_at=created,
            rating=_rating(attributes.get("rating"), review_id),
            thread_id=review_id,
            raw={"review_id": review_id, "territory": territory, "source": "app_store_connect"},
        )

    def post_reply(self, target: ReplyTarget, text: str, *, key: str) -> SentReply:
        review_id = str(target.raw.get("review_id") or target.external_id)
        payload = {
            "data": {
                "type": "customerReviewResponses",
                "attributes": {"responseBody": text},
                "relationships": {"review": {"data": {"type": "customerReviews", "id": review_id}}},
            }
        }
        try:
            response = self._asc(
                "POST", f"{ASC}/v1/customerReviewResponses", json=payload, once=True
            )
        except PermanentError as exc:
            if exc.status in (404, 409, 422):
                raise ReplyNotAllowed(
                    f"App Store Connect refused the response ({exc.status}): "
                    f"{(exc.body or '')[:200]}",
                    status=exc.status,
                ) from exc
            raise
        data = self._object(response).get("data")
        if not isinstance(data, Mapping) or not data.get("id"):
            raise PayloadError(
                f"{self.name}: the response was created without an id", uncertain=True
            )
        return SentReply(external_id=str(data["id"]), url=target.url)

    def find_reply(
        self, target: ReplyTarget, key: str, text: str | None = None
    ) -> SentReply | None:
        review_id = str(target.raw.get("review_id") or target.external_id)
        try:
            response = self._asc("GET", f"{ASC}/v1/customerReviews/{review_id}/response")
        except PermanentError as exc:
            if exc.status == 404:
                return None
            raise
        data = self._object(response).get("data")
        if not isinstance(data, Mapping) or not data.get("id"):
            return None
        said = str((data.get("attributes") or {}).get("responseBody") or "")
        if text is not None and said.strip() != text.strip():
            return None
        return SentReply(external_id=str(data["id"]), url=target.url, already_there=True)

    def _asc(self, method: str, url: str, *, once: bool = False, **kwargs: Any) -> httpx.Response:
        request = self.client.build_request(
            method, url, headers={"Authorization": f"Bearer {self._token()}"}, **kwargs
        )
        try:
            return self.send_once(request) if once else self.send(request)
        except AuthError as exc:
            self._jwt = None
            raise AuthError(
                f"{exc}; App Store Connect refused the key: check connectors[{self.name}]"
                ".credentials.issuer_id, key_id and private_key (a key with the Customer Support "
                "role, not revoked)",
                status=exc.status,
                body=exc.body,
            ) from exc

    def _token(self) -> str:
        now = utcnow().timestamp()
        if self._jwt is None or now > self._jwt_expires - 60:
            self._jwt = jwt.encode(
                {
                    "iss": self.credentials["issuer_id"].strip(),
                    "iat": int(now),
                    "exp": int(now) + TOKEN_SECONDS,
                    "aud": "appstoreconnect-v1",
                },
                _signing_key(self.settings),
                algorithm="ES256",
                headers={"kid": self.credentials["key_id"].strip(), "typ": "JWT"},
            )
            self._jwt_expires = now + TOKEN_SECONDS
        return self._jwt

    # -- the public feed ----------------------------------------------------------------------

    def _feed_pages(self, saved: dict[str, Any]) -> Iterator[Page]:
        marks: dict[str, Any] = dict(saved.get("feed") or {})
        countries = [c.strip().lower() for c in self.options.get("countries") or ["us"]]
        for country in dict.fromkeys(countries):
            mark = Mark.load(*_feed_mark(marks.get(country)))
            seen = mark
            for page in range(1, min(FEED_PAGES, self.max_pages) + 1):
                url = FEED.format(country=country, page=page, app=self.app_id)
                feed = self._object(self.send(self.client.build_request("GET", url))).get("feed")
                # Feeds have been seen whose entries carry no `updated` of their own: the
                # feed's time stands in, or such a feed would yield nothing and never move on.
                fed = _entry_time(feed) if isinstance(feed, Mapping) else None
                stamped = [(e, _entry_time(e) or fed, _label_of(e, "id")) for e in _entries(feed)]
                fresh = [e for e, at, rid in stamped if mark.is_new(at, rid)]
                mentions = self.map_items(
                    fresh,
                    lambda e, c=country, t=fed: self._feed_mention(e, c, t),
                    label=_entry_label,
                )
                seen = seen.after(stamped)
                reached = any(mark.reached(at, rid) for _, at, rid in stamped)
                done = not stamped or reached or page == FEED_PAGES
                if done and seen.at:
                    marks[country] = seen.dump("at")
                yield Page(items=mentions, cursor=self.dump_cursor({**saved, "feed": marks}))
                if done:
                    break

    def _feed_mention(
        self, entry: Mapping[str, Any], country: str, fed: datetime | None = None
    ) -> NewMention:
        review_id = _label_of(entry, "id")
        text = _label_of(entry, "content").strip()
        if not review_id or not text:
            raise PayloadError("feed entry has no id or content")
        updated = _entry_time(entry) or fed
        if updated is None:
            raise PayloadError(f"review {review_id} has no updated time")
        author = entry.get("author") if isinstance(entry.get("author"), Mapping) else {}
        return NewMention(
            source=self.name,
            external_id=review_id,
            platform=self.platform,
            text=text,
            title=_label_of(entry, "title").strip() or None,
            url=STORE_URL.format(country=country, app=self.app_id),
            author_name=_label_of(author, "name").strip() or None,
            created_at=updated,
            rating=_rating(_label_of(entry, "im:rating"), review_id),
            engagement=int(_label_of(entry, "im:voteCount") or 0) or None,
            thread_id=review_id,
            raw={
                "review_id": review_id,
                "country": country,
                "version": _label_of(entry, "im:version"),
                "source": "public_feed",
            },
        )

    def _object(self, response: httpx.Response) -> dict[str, Any]:
        return json_object(response, f"{self.name}: Apple")


def _signing_key(settings: ConnectorSettings) -> ec.EllipticCurvePrivateKey:
    """The EC P-256 key from credentials.private_key or options.private_key_path."""
    text = str(settings.credentials.get("private_key") or "").strip()
    path = settings.options.get("private_key_path")
    if not text and path:
        try:
            text = Path(str(path)).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read {path} ({exc.strerror})") from exc
    try:
        key = load_pem_private_key(text.replace("\\n", "\n").encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError("not a PEM private key (the text of the .p8 file)") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError("not an EC P-256 key; App Store Connect keys are")
    return key


@dataclass(frozen=True, slots=True)
class Mark:
    """A high-water mark: the newest review time seen and the ids at exactly that time.

    The ids let a later review with the same timestamp through instead of skipping it.
    """

    at: datetime | None = None
    ids: frozenset[str] = frozenset()

    @classmethod
    def load(cls, at: Any, ids: Any) -> Mark:
        listed = ids if isinstance(ids, list) else []
        return cls(parse_time(at), frozenset(str(i) for i in listed))

    def is_new(self, at: datetime | None, review_id: str) -> bool:
        """Whether a review is past the mark; one without a time is passed on to be logged."""
        if at is None or self.at is None or at > self.at:
            return True
        return at == self.at and review_id not in self.ids

    def reached(self, at: datetime | None, review_id: str) -> bool:
        """Whether a review shows the walk has come down to the mark."""
        return at is not None and self.at is not None and not self.is_new(at, review_id)

    def after(self, stamped: list[tuple[Any, datetime | None, str]]) -> Mark:
        """This mark moved up to the newest of `stamped` (item, time, id) triples."""
        at, ids = self.at, set(self.ids)
        for _, moment, review_id in stamped:
            if moment is None or not review_id:
                continue
            if at is None or moment > at:
                at, ids = moment, {review_id}
            elif moment == at:
                ids.add(review_id)
        return Mark(at, frozenset(ids))

    def dump(self, key: str) -> dict[str, Any]:
        if self.at is None:
            return {}
        return {key: self.at.isoformat(), f"{key}_ids": sorted(self.ids)}


def _store_url(app_id: str, country: str | None) -> str:
    if country:
        return STORE_URL.format(country=country, app=app_id)
    return ANY_STORE_URL.format(app=app_id)


def _feed_mark(saved: Any) -> tuple[Any, Any]:
    """A country's saved mark: {"at", "at_ids"}, or the bare time older cursors kept."""
    if isinstance(saved, Mapping):
        return saved.get("at"), saved.get("at_ids")
    return saved, None


def _review_id(review: Any) -> str:
    return str(review.get("id") or "") if isinstance(review, Mapping) else ""


def _entries(feed: Any) -> list[Any]:
    """The feed's review entries: a single one arrives as an object; the app's own entry
    (with im:name, which older feeds put first) is not a review."""
    if not isinstance(feed, Mapping):
        return []
    entries = feed.get("entry") or []
    entries = [entries] if isinstance(entries, Mapping) else entries
    if not isinstance(entries, list):
        raise PayloadError("the feed's entry is neither a list nor an object")
    return [e for e in entries if not (isinstance(e, Mapping) and "im:name" in e)]


def _label_of(item: Any, key: str) -> str:
    value = item.get(key) if isinstance(item, Mapping) else None
    label = value.get("label") if isinstance(value, Mapping) else None
    return str(label) if label is not None else ""


def _entry_time(entry: Any) -> datetime | None:
    return parse_time(_label_of(entry, "updated"))


def _review_time(review: Any) -> datetime | None:
    attributes = review.get("attributes") if isinstance(review, Mapping) else None
    return parse_time(attributes.get("createdDate")) if isinstance(attributes, Mapping) else None


def _rating(value: Any, review_id: str) -> float:
    try:
        rating = int(value)
    except (TypeError, ValueError):
        raise PayloadError(f"review {review_id} has rating {value!r}") from None
    if not 1 <= rating <= 5:
        raise PayloadError(f"review {review_id} has rating {value!r}")
    return float(rating)


def _label(review: Any) -> str | None:
    if isinstance(review, Mapping) and review.get("id"):
        return f"review id={review['id']!r}"
    return None


def _entry_label(entry: Any) -> str | None:
    review_id = _label_of(entry, "id")
    return f"review id={review_id!r}" if review_id else None

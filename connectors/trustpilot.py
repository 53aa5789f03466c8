"""Trustpilot reviews of one business unit, read with an API key and answered as a business user.

Reading: `GET https://api.trustpilot.com/v1/business-units/{id}/reviews?perPage=100&
orderBy=createdat.desc&page=N` with the `apikey` header; the next page is the `links` entry with
rel "next-page". `options.business_unit_id`, or `options.domain` (e.g. "kestrel.com"), which is
resolved once with `GET /v1/business-units/find?name=<domain>`. Each review becomes a mention
with its stars, title, language and the consumer's name; `raw` keeps the consumer's review count
and whether Trustpilot verified the review.

Cursor and crash safety: newest first; the cursor is the newest createdAt seen and moves only
when a walk reaches it or ends, so a crash mid-walk re-reads pages and the store dedupes.

Replies: `POST https://api.trustpilot.com/v1/private/reviews/{reviewId}/reply` with
{"authorBusinessUserId", "message"}, authorised by a business user's access token from the
password grant (`POST /v1/oauth/oauth-business-users-for-applications/accesstoken`, HTTP basic
auth with the API key and secret). A review has one company reply and a new one replaces it, so
a repeat is harmless. Trustpilot documents no length limit for replies; triage keeps them to
2,000 characters of plain text.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, ClassVar

import httpx

from connectors.base import (
    AuthError,
    Connector,
    Page,
    PayloadError,
    PermanentError,
    ReplyNotAllowed,
    SentReply,
    is_newer,
    json_object,
    latest,
    parse_time,
)
from connectors.reply import ReplyRules
from triage.config import ConnectorSettings
from triage.domain import NewMention, ReplyTarget

API = "https://api.trustpilot.com/v1"
TOKEN_URL = f"{API}/oauth/oauth-business-users-for-applications/accesstoken"
REVIEW_URL = "https://www.trustpilot.com/reviews/{id}"
PAGE_SIZE = 100
REPLY_LIMIT = 2000


class TrustpilotConnector(Connector):
    """Reviews of one Trustpilot business unit."""

    type = "trustpilot"
    platform = "trustpilot"
    uses_queries = False
    optional_options = ("business_unit_id", "domain")
    required_credentials = ("api_key",)
    optional_credentials = ("api_secret", "username", "password", "business_user_id")
    reply_credentials = ("api_secret", "username", "password", "business_user_id")
    expected: ClassVar[Mapping[str, str]] = {
        "business_unit_id": "the business unit id (Trustpilot Business > Integrations > API)",
        "domain": "the domain your Trustpilot profile is listed under, e.g. kestrel.com",
        "api_key": "the API key of an application in Trustpilot Business > Integrations > API",
        "api_secret": "that application's secret",
        "username": "the e-mail of a Trustpilot Business user who may reply",
        "password": "that user's password",
        "business_user_id": "that user's id, shown as authorBusinessUserId in the API",
    }
    default_interval = 30 * 60.0
    reply_rules: ClassVar[ReplyRules | None] = ReplyRules(
        max_length=REPLY_LIMIT,
        links=False,
        private_messages=False,
        note="one reply per review; a new one replaces it",
    )
    reply_is_idempotent = True

    def __init__(self, settings: ConnectorSettings, **kwargs: Any):
        super().__init__(settings, **kwargs)
        self._unit: str | None = None
        self._access: str | None = None
        self._expires = 0.0

    @classmethod
    def check_settings(cls, settings: ConnectorSettings) -> list[str]:
        problems = super().check_settings(settings)
        unit, domain = settings.options.get("business_unit_id"), settings.options.get("domain")
        if not unit and not domain:
            problems.append(
                f"connectors[{settings.name}].options: set business_unit_id "
                f"({cls.expected['business_unit_id']}) or domain ({cls.expected['domain']})"
            )
        return problems

    def pages(self, cursor: str | None) -> Iterator[Page]:
        since = parse_time(self.load_cursor(cursor).get("created"))
        newest = since
        url: str | None = f"{API}/business-units/{self.business_unit()}/reviews"
        params: dict[str, str] | None = {
            "perPage": str(PAGE_SIZE),
            "orderBy": "createdat.desc",
            "page": "1",
        }
        for _ in range(self.max_pages):
            body = self._object(self.send(self._get(url or "", params)))
            reviews = body.get("reviews")
            if not isinstance(reviews, list):
                raise PayloadError(f"{self.name}: Trustpilot returned no list of reviews")
            fresh = [r for r in reviews if is_newer(_created(r), since)]
            mentions = self.map_items(fresh, self._mention)
            newest = latest(newest, *(_created(r) for r in fresh))
            url, params = _next_page(body), None
            if not reviews or not url or len(fresh) < len(reviews):
                final = self.dump_cursor({"created": newest.isoformat()}) if newest else cursor
                yield Page(items=mentions, cursor=final)
                return
            yield Page(items=mentions, cursor=cursor)

    def business_unit(self) -> str:
        """The business unit id: configured, or found once by domain."""
        if self._unit is None:
            configured = str(self.options.get("business_unit_id") or "").strip()
            if configured:
                self._unit = configured
            else:
                domain = str(self.options["domain"]).strip()
                try:
                    found = self._object(
                        self.send(self._get(f"{API}/business-units/find", {"name": domain}))
                    )
                except PermanentError as exc:
                    if exc.status == 404:
                        raise PermanentError(
                            f"{self.name}: Trustpilot has no business unit for {domain!r}; check "
                            f"connectors[{self.name}].options.domain",
                            status=404,
                        ) from exc
                    raise
                if not found.get("id"):
                    raise PayloadError(f"{self.name}: business-units/find returned no id")
                self._unit = str(found["id"])
        return self._unit

    def _get(self, url: str, params: Mapping[str, str] | None) -> httpx.Request:
        return self.client.build_request(
            "GET", url, params=params, headers={"apikey": self.credentials["api_key"]}
        )

    def send(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().send(request)
        except AuthError as exc:
            raise AuthError(
                f"{exc}; connectors[{self.name}].credentials.api_key was refused: "
                f"expected {self.expected['api_key']}",
                status=exc.status,
                body=exc.body,
            ) from exc

    def _mention(self, review: Mapping[str, Any]) -> NewMention:
        if not isinstance(review, Mapping):
            raise PayloadError(f"review is a {type(review).__name__}, not an object")
        review_id = str(review["id"])
        text = str(review.get("text") or "").strip()
        if not text:
            raise PayloadError(f"review {review_id} has no text")
        stars = review.get("stars")
        if not isinstance(stars, int) or not 1 <= stars <= 5:
            raise PayloadError(f"review {review_id} has {stars!r} stars")
        created = _created(review)
        if created is None:
            raise PayloadError(f"review {review_id} has no createdAt")
        consumer = review.get("consumer") if isinstance(review.get("consumer"), Mapping) else {}
        reply = (
            review.get("companyReply") if isinstance(review.get("companyReply"), Mapping) else {}
        )
        return NewMention(
            source=self.name,
            external_id=review_id,
            platform=self.platform,
            text=text,
            title=str(review.get("title") or "").strip() or None,
            url=REVIEW_URL.format(id=review_id),
            author_name=str(consumer.get("displayName") or "").strip() or None,
            created_at=created,
            rating=float(stars),
            engagement=review.get("numberOfLikes")
            if isinstance(review.get("numberOfLikes"), int)
            else None,
            thread_id=review_id,
            raw={
                "review_id": review_id,
                "language": review.get("language"),
                "consumer_id": consumer.get("id"),
                "consumer_reviews": consumer.get("numberOfReviews"),
                "consumer_location": consumer.get("displayLocation"),
                "verified": review.get("isVerified"),
                "verification_level": review.get("reviewVerificationLevel"),
                "company_reply": reply.get("text"),
            },
        )

    def post_reply(self, target: ReplyTarget, text: str, *, key: str) -> SentReply:
        review_id = str(target.raw.get("review_id") or target.external_id)
        body = {"authorBusinessUserId": self.credentials["business_user_id"], "message": text}
        url = f"{API}/private/reviews/{review_id}/reply"
        for attempt in (1, 2):
            request = self.client.build_request(
                "POST", url, json=body, headers={"Authorization": f"Bearer {self._token()}"}
            )
            try:
                self.send_once(request)
                break
            except AuthError as exc:
                self._access = None
                if exc.status == 401 and attempt == 1:
                    continue  # refused before it acted: a fresh token and once more
                raise AuthError(
                    f"{exc}; the Trustpilot business user may not reply: check "
                    f"connectors[{self.name}].credentials.username, password and business_user_id",
                    status=exc.status,
                    body=exc.body,
                ) from exc
            except PermanentError as exc:
                if exc.status in (400, 404):
                    raise ReplyNotAllowed(
                        f"Trustpilot refused the reply ({exc.status}): {(exc.body or '')[:200]}",
                        status=exc.status,
                    ) from exc
                raise
        return SentReply(external_id=review_id, url=target.url or REVIEW_URL.format(id=review_id))

    def find_reply(
        self, target: ReplyTarget, key: str, text: str | None = None
    ) -> SentReply | None:
        review_id = str(target.raw.get("review_id") or target.external_id)
        review = self._object(self.send(self._get(f"{API}/reviews/{review_id}", None)))
        reply = review.get("companyReply")
        said = reply.get("text") if isinstance(reply, Mapping) else None
        if not said or (text is not None and str(said).strip() != text.strip()):
            return None
        return SentReply(
            external_id=review_id,
            url=target.url or REVIEW_URL.format(id=review_id),
            already_there=True,
        )

    def _token(self) -> str:
        """A business user's access token (password grant), reused until it nearly expires."""
        if self._access and time.time() < self._expires:
            return self._access
        secret = f"{self.credentials['api_key']}:{self.credentials['api_secret']}"
        request = self.client.build_request(
            "POST",
            TOKEN_URL,
            data={
                "grant_type": "password",
                "username": self.credentials["username"],
                "password": self.credentials["password"],
            },
            headers={"Authorization": "Basic " + base64.b64encode(secret.encode()).decode()},
        )
        try:
            response = super().send(request)
        except (AuthError, PermanentError) as exc:
            raise AuthError(
                f"{exc}; Trustpilot refused the business login: check "
                f"connectors[{self.name}].credentials.api_secret, username and password",
                status=exc.status,
                body=exc.body,
            ) from exc
        token = self._object(response)
        if not token.get("access_token"):
            raise PayloadError(f"{self.name}: the Trustpilot token answer has no access_token")
        try:
            lifetime = float(token.get("expires_in") or 3600)
        except (TypeError, ValueError):
            lifetime = 3600.0
        self._access = str(token["access_token"])
        self._expires = time.time() + max(0.0, lifetime - 60)
        return self._access

    def _object(self, response: httpx.Response) -> dict[str, Any]:
        return json_object(response, f"{self.name}: Trustpilot")


def _object(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _next_page(body: Mapping[str, Any]) -> str | None:
    for link in body.get("links") or []:
        if isinstance(link, Mapping) and link.get("rel") == "next-page" and link.get("href"):
            return str(link["href"])
    return None


def _created(review: Any) -> datetime | None:
    return parse_time(review.get("createdAt")) if isinstance(review, Mapping) else None

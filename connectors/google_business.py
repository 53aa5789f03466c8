"""Google Business Profile reviews of the brand's locations, read and answered with OAuth 2.0.

`GET https://mybusiness.googleapis.com/v4/accounts/{account}/locations/{location}/reviews`
(pageSize=50, orderBy "updateTime desc", `pageToken` paging) for each location in
`options.location_ids`, as a Google account that manages them: an access token from
`credentials.refresh_token` with `client_id` and `client_secret` (scope business.manage).
A rating without a comment is kept, with a short text saying so, because a 1-star rating with
no words still deserves an answer. A review is stored once: later edits (and the change our own
reply makes to updateTime) do not reopen it.

Cursor and crash safety: per location, the newest updateTime seen; it moves only when the walk
of that location reaches it or ends, so a crash mid-walk re-reads pages and the store dedupes.

Replies: `PUT .../reviews/{reviewId}/reply` with {"comment"} (updateReply): a review has one
owner reply and a PUT replaces it, so a repeat is harmless. Google limits it to 4,096 bytes of
UTF-8, which is fewer characters in Polish or Latvian than in English.
"""

from __future__ import annotations

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
from connectors.google_auth import GoogleCaller
from connectors.reply import LengthUnit, ReplyRules
from triage.config import ConnectorSettings
from triage.domain import NewMention, ReplyTarget

API = "https://mybusiness.googleapis.com/v4/accounts/{account}/locations/{location}/reviews"
PAGE_SIZE = 50
STARS = {"ONE": 1, "TWO": 2, "THREE": 3, "FOUR": 4, "FIVE": 5}
NO_COMMENT = "({stars}-star rating without a comment)"


class GoogleBusinessConnector(Connector):
    """Reviews of the brand's locations on Google (Maps and Search)."""

    type = "google_business"
    platform = "google_business"
    uses_queries = False
    required_options = ("account_id", "location_ids")
    required_credentials = ("client_id", "client_secret", "refresh_token")
    expected: ClassVar[Mapping[str, str]] = {
        "account_id": "the numeric Business Profile account id (accounts/<id>)",
        "location_ids": 'a list of numeric location ids, e.g. ["1234567890123456789"]',
        "client_id": "the OAuth client id of a Google Cloud project with the Business Profile "
        "APIs enabled",
        "client_secret": "that client's secret",
        "refresh_token": "a refresh token of a Google account that manages the locations, with "
        "the https://www.googleapis.com/auth/business.manage scope",
    }
    default_interval = 30 * 60.0
    reply_rules: ClassVar[ReplyRules | None] = ReplyRules(
        max_length=4096,
        unit=LengthUnit.UTF8_BYTES,
        links=False,
        private_messages=False,
        note="one owner reply per review; a new one replaces it",
    )
    reply_is_idempotent = True

    def __init__(self, settings: ConnectorSettings, **kwargs: Any):
        super().__init__(settings, **kwargs)
        self._caller: GoogleCaller | None = None

    @classmethod
    def check_settings(cls, settings: ConnectorSettings) -> list[str]:
        problems = super().check_settings(settings)
        prefix = f"connectors[{settings.name}].options"
        account = settings.options.get("account_id")
        if account is not None and not str(account).strip().isdigit():
            problems.append(
                f"{prefix}.account_id: {account!r} is not valid; "
                f"expected {cls.expected['account_id']}"
            )
        locations = settings.options.get("location_ids")
        if locations is not None and not (
            isinstance(locations, list)
            and locations
            and all(str(location).strip().isdigit() for location in locations)
        ):
            problems.append(
                f"{prefix}.location_ids: {locations!r} is not valid; "
                f"expected {cls.expected['location_ids']}"
            )
        return problems

    def pages(self, cursor: str | None) -> Iterator[Page]:
        marks: dict[str, Any] = self.load_cursor(cursor)
        for location in dict.fromkeys(str(x).strip() for x in self.options["location_ids"]):
            yield from self._location_pages(location, marks)

    def _location_pages(self, location: str, marks: dict[str, Any]) -> Iterator[Page]:
        since = parse_time(marks.get(location))
        newest = since
        token: str | None = None
        url = API.format(account=str(self.options["account_id"]).strip(), location=location)
        for _ in range(self.max_pages):
            params = {"pageSize": str(PAGE_SIZE), "orderBy": "updateTime desc"}
            if token:
                params["pageToken"] = token
            body = self._object(self._call("GET", url, params=params))
            reviews = body.get("reviews") or []
            if not isinstance(reviews, list):
                raise PayloadError(f"{self.name}: reviews is not a list")
            # An item without a time is passed on so map_items logs it; only a dated review at
            # or before the mark proves the walk has reached what the last run saw.
            fresh = [r for r in reviews if _updated(r) is None or is_newer(_updated(r), since)]
            reached = any(
                _updated(r) is not None and not is_newer(_updated(r), since) for r in reviews
            )
            mentions = self.map_items(fresh, lambda r: self._mention(r, location), label=_label)
            newest = latest(newest, *(_updated(r) for r in fresh))
            token = (
                body.get("nextPageToken") if isinstance(body.get("nextPageToken"), str) else None
            )
            if not reviews or not token or reached:
                if newest:
                    marks[location] = newest.isoformat()
                yield Page(items=mentions, cursor=self.dump_cursor(marks))
                return
            yield Page(items=mentions, cursor=self.dump_cursor(marks))

    def _mention(self, review: Mapping[str, Any], location: str) -> NewMention:
        if not isinstance(review, Mapping):
            raise PayloadError(f"review is a {type(review).__name__}, not an object")
        review_id = str(review["reviewId"])
        stars = STARS.get(str(review.get("starRating")))
        if stars is None:
            raise PayloadError(f"review {review_id} has star rating {review.get('starRating')!r}")
        created = parse_time(review.get("createTime"))
        if created is None:
            raise PayloadError(f"review {review_id} has no createTime")
        reviewer = review.get("reviewer") if isinstance(review.get("reviewer"), Mapping) else {}
        anonymous = bool(reviewer.get("isAnonymous"))
        comment = str(review.get("comment") or "").strip()
        reply = review.get("reviewReply") if isinstance(review.get("reviewReply"), Mapping) else {}
        return NewMention(
            source=self.name,
            external_id=review_id,
            platform=self.platform,
            text=comment or NO_COMMENT.format(stars=stars),
            author_name=None if anonymous else str(reviewer.get("displayName") or "") or None,
            created_at=created,
            rating=float(stars),
            thread_id=review_id,
            raw={
                "review_id": review_id,
                "name": review.get("name"),
                "location_id": location,
                "has_comment": bool(comment),
                "owner_reply": reply.get("comment"),
            },
        )

    def post_reply(self, target: ReplyTarget, text: str, *, key: str) -> SentReply:
        try:
            response = self._call("PUT", self._reply_url(target), json={"comment": text}, once=True)
        except PermanentError as exc:
            if exc.status in (400, 404):
                raise ReplyNotAllowed(
                    f"Google refused the reply ({exc.status}): {(exc.body or '')[:200]}",
                    status=exc.status,
                ) from exc
            raise
        self._object(response)
        return SentReply(external_id=str(target.raw.get("review_id")), url=target.url)

    def find_reply(
        self, target: ReplyTarget, key: str, text: str | None = None
    ) -> SentReply | None:
        review = self._object(self._call("GET", self._reply_url(target).removesuffix("/reply")))
        reply = review.get("reviewReply")
        said = reply.get("comment") if isinstance(reply, Mapping) else None
        if not said or (text is not None and str(said).strip() != text.strip()):
            return None
        return SentReply(
            external_id=str(target.raw.get("review_id")), url=target.url, already_there=True
        )

    def _reply_url(self, target: ReplyTarget) -> str:
        location, review_id = target.raw.get("location_id"), target.raw.get("review_id")
        if not location or not review_id:
            raise ReplyNotAllowed("this review was stored without its location and review id")
        account = str(self.options["account_id"]).strip()
        return f"{API.format(account=account, location=location)}/{review_id}/reply"

    def _call(self, method: str, url: str, *, once: bool = False, **kwargs: Any) -> httpx.Response:
        """A call as the managing Google account; a refusal names the credential."""
        if self._caller is None:
            self._caller = GoogleCaller.with_refresh_token(self)
        try:
            return self._caller.call(method, url, once=once, **kwargs)
        except AuthError as exc:
            raise AuthError(
                f"{exc}; connectors[{self.name}].credentials.refresh_token was refused: "
                f"expected {self.expected['refresh_token']}",
                status=exc.status,
                body=exc.body,
            ) from exc

    def _object(self, response: httpx.Response) -> dict[str, Any]:
        return json_object(response, f"{self.name}: Google Business Profile")


def _updated(review: Any) -> datetime | None:
    if not isinstance(review, Mapping):
        return None
    return parse_time(review.get("updateTime")) or parse_time(review.get("createTime"))


def _label(review: Any) -> str | None:
    if isinstance(review, Mapping) and review.get("reviewId"):
        return f"review reviewId={review['reviewId']!r}"
    return None

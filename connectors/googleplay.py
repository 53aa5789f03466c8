"""Google Play reviews of one app, read and answered through the Android Publisher API v3.

`GET https://androidpublisher.googleapis.com/androidpublisher/v3/applications/{package}/reviews`
(maxResults=100, `token` paging from tokenPagination.nextPageToken), authorised by a service
account (a signed JWT traded for an access token, scope androidpublisher) that was invited in
Play Console > Users and permissions with "Reply to reviews". The API returns only reviews
created or edited in the last 7 days, so the default interval (1 hour) stays well inside that;
a connector stopped for longer than a week misses what fell out of the window.

Each review's userComment becomes a mention: the star rating, the language the reviewer wrote
in, device and app version in `raw`. The Play API puts a title before a tab in the text
("Title\tBody"). An edited review is a new version (its lastModified changes): it is stored as
a new mention `<reviewId>@<seconds>` in the same thread, because a customer who turns five stars
into one after an answer needs another look.

Cursor and crash safety: reviews arrive newest edit first; the cursor is the newest
lastModified second seen plus the review ids edited in that second (so a review landing in the
same second later is neither skipped nor re-read). It moves only when the walk reaches it (or
the end), so a crash mid-walk re-reads the same pages and the store dedupes. Rate limits: the
reviews calls share the Play API's "Publishing, Monetization and Reply to Reviews" bucket
(3,000 queries a minute by default); one list walk an hour sits far inside it. Ratings without
a comment never reach the API.

Replies: `POST .../reviews/{reviewId}:reply` with `replyText`, at most 350 characters, plain
text (links are not clickable). A review has one developer reply; a new one replaces it, so a
repeat is harmless (`reply_is_idempotent`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
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
    json_object,
)
from connectors.google_auth import GoogleCaller, GoogleToken, ServiceAccount
from connectors.reply import ReplyRules
from triage.config import ConnectorSettings
from triage.domain import NewMention, ReplyTarget

API = "https://androidpublisher.googleapis.com/androidpublisher/v3/applications/{package}/reviews"
SCOPE = "https://www.googleapis.com/auth/androidpublisher"
STORE_URL = "https://play.google.com/store/apps/details?id={package}&reviewId={review}"
PAGE_SIZE = 100


class GooglePlayConnector(Connector):
    """Reviews of one Android app on Google Play, answered as the developer."""

    type = "googleplay"
    platform = "googleplay"
    uses_queries = False
    required_options = ("package_name",)
    required_credentials = ("service_account_json",)
    expected: ClassVar[Mapping[str, str]] = {
        "package_name": "the app's package name, e.g. com.kestrel.mobile",
        "service_account_json": "a service account key (the JSON text, or the path to the "
        ".json file) of a Google Cloud project linked to Play Console, invited with the "
        "Reply to reviews permission",
    }
    default_interval = 60 * 60.0
    reply_rules: ClassVar[ReplyRules | None] = ReplyRules(
        max_length=350,
        links=False,
        private_messages=False,
        note="one reply per review; a new reply replaces the old",
    )
    reply_is_idempotent = True

    def __init__(self, settings: ConnectorSettings, **kwargs: Any):
        super().__init__(settings, **kwargs)
        self._caller: GoogleCaller | None = None

    @classmethod
    def check_settings(cls, settings: ConnectorSettings) -> list[str]:
        problems = super().check_settings(settings)
        package = settings.options.get("package_name")
        if package is not None and not (isinstance(package, str) and "." in package.strip()):
            problems.append(
                f"connectors[{settings.name}].options.package_name: {package!r} is not a "
                f"package name; expected {cls.expected['package_name']}"
            )
        key = settings.credentials.get("service_account_json")
        if key and key.strip():
            where = f"connectors[{settings.name}].credentials.service_account_json"
            try:
                ServiceAccount.from_json(_key_text(key, where), where=where)
            except AuthError as exc:
                problems.append(f"{exc}; expected {cls.expected['service_account_json']}")
        return problems

    @property
    def package(self) -> str:
        return str(self.options["package_name"]).strip()

    def pages(self, cursor: str | None) -> Iterator[Page]:
        state = self.load_cursor(cursor)
        since = _int(state.get("seconds"))
        seen = {str(i) for i in state.get("ids") or []} if since is not None else set()
        newest, newest_ids = since, set(seen)

        def is_new(review: Any) -> bool:
            moment = _modified(review)
            if moment is None or since is None or moment > since:
                return True  # an item without a time is passed on so map_items logs it
            return moment == since and _id(review) not in seen

        token: str | None = None
        for _ in range(self.max_pages):
            params = {"maxResults": str(PAGE_SIZE)}
            if token:
                params["token"] = token
            body = self._object(self._call("GET", API.format(package=self.package), params=params))
            reviews = body.get("reviews") or []
            if not isinstance(reviews, list):
                raise PayloadError(f"{self.name}: reviews is not a list")
            fresh = [r for r in reviews if is_new(r)]
            mentions = self.map_items(fresh, self._mention, label=_label)
            for review in fresh:
                moment = _modified(review)
                if moment is None or (newest is not None and moment < newest):
                    continue
                if newest is None or moment > newest:
                    newest, newest_ids = moment, set()
                newest_ids.add(_id(review))
            pagination = body.get("tokenPagination")
            next_token = (
                pagination.get("nextPageToken") if isinstance(pagination, Mapping) else None
            )
            reached = any(_modified(r) is not None and not is_new(r) for r in reviews)
            if not reviews or not next_token or reached:
                # The walk reached what the last run saw: only now may the mark move.
                final = (
                    self.dump_cursor({"seconds": newest, "ids": sorted(newest_ids)})
                    if newest is not None and newest_ids != seen
                    else cursor
                )
                yield Page(items=mentions, cursor=final)
                return
            yield Page(items=mentions, cursor=cursor)
            token = str(next_token)

    def _mention(self, review: Mapping[str, Any]) -> NewMention:
        if not isinstance(review, Mapping):
            raise PayloadError(f"review is a {type(review).__name__}, not an object")
        review_id = str(review["reviewId"])
        user = _user_comment(review)
        if user is None:
            raise PayloadError(f"review {review_id} has no userComment")
        seconds = _int((user.get("lastModified") or {}).get("seconds"))
        if seconds is None:
            raise PayloadError(f"review {review_id} has no lastModified time")
        raw_text = str(user.get("text") or "")
        title, _, body = raw_text.partition("\t") if "\t" in raw_text else ("", "", raw_text)
        text = body.strip() or title.strip()
        if not text:
            raise PayloadError(f"review {review_id} has no text")
        rating = user.get("starRating")
        if not isinstance(rating, int) or not 1 <= rating <= 5:
            raise PayloadError(f"review {review_id} has star rating {rating!r}")
        return NewMention(
            source=self.name,
            external_id=f"{review_id}@{seconds}",
            platform=self.platform,
            text=text,
            title=title.strip() or None,
            url=STORE_URL.format(package=self.package, review=review_id),
            author_name=str(review.get("authorName") or "").strip() or None,
            created_at=datetime.fromtimestamp(seconds, tz=UTC),
            rating=float(rating),
            engagement=_int(user.get("thumbsUpCount")),
            thread_id=review_id,
            raw={
                "review_id": review_id,
                "language": user.get("reviewerLanguage"),
                "device": user.get("device"),
                "android_os_version": user.get("androidOsVersion"),
                "app_version_name": user.get("appVersionName"),
                "app_version_code": user.get("appVersionCode"),
                "original_text": user.get("originalText"),
                "developer_reply": _developer_text(review),
            },
        )

    def post_reply(self, target: ReplyTarget, text: str, *, key: str) -> SentReply:
        review_id = _review_id(target)
        url = f"{API.format(package=self.package)}/{review_id}:reply"
        try:
            response = self._call("POST", url, json={"replyText": text}, once=True)
        except PermanentError as exc:
            if exc.status in (400, 404):
                raise ReplyNotAllowed(
                    f"Google Play refused the reply ({exc.status}): the review may be older "
                    "than a year, deleted, or the text not allowed",
                    status=exc.status,
                ) from exc
            raise
        result = self._object(response).get("result")
        if not isinstance(result, Mapping):
            raise PayloadError(f"{self.name}: reviews.reply answered without a result")
        return SentReply(external_id=review_id, url=target.url)

    def find_reply(
        self, target: ReplyTarget, key: str, text: str | None = None
    ) -> SentReply | None:
        review_id = _review_id(target)
        body = self._object(self._call("GET", f"{API.format(package=self.package)}/{review_id}"))
        reply = _developer_text(body)
        if reply is None or (text is not None and reply.strip() != text.strip()):
            return None
        return SentReply(external_id=review_id, url=target.url, already_there=True)

    def _call(self, method: str, url: str, *, once: bool = False, **kwargs: Any) -> httpx.Response:
        """A call as the service account; a refusal says how to give it access."""
        if self._caller is None:
            where = f"connectors[{self.name}].credentials.service_account_json"
            account = ServiceAccount.from_json(
                _key_text(self.credentials["service_account_json"], where), where=where
            )
            token = GoogleToken.service_account(account, SCOPE, where=where)
            self._caller = GoogleCaller(token, self.client, self.send_plain)
        try:
            return self._caller.call(method, url, once=once, **kwargs)
        except AuthError as exc:
            raise AuthError(
                f"{exc}; connectors[{self.name}].credentials.service_account_json was "
                f"refused for {self.package}: invite the service account in Play Console "
                "(Users and permissions) with Reply to reviews",
                status=exc.status,
                body=exc.body,
            ) from exc

    def _object(self, response: httpx.Response) -> dict[str, Any]:
        return json_object(response, f"{self.name}: Google Play")


def _key_text(value: str, where: str) -> str:
    """The key's JSON: the value itself, or the file it names."""
    if value.lstrip().startswith("{"):
        return value
    path = Path(value.strip()).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AuthError(f"{where}: cannot read {path} ({exc.strerror})") from exc


def _user_comment(review: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for comment in review.get("comments") or []:
        if isinstance(comment, Mapping) and isinstance(comment.get("userComment"), Mapping):
            return comment["userComment"]
    return None


def _developer_text(review: Mapping[str, Any]) -> str | None:
    for comment in review.get("comments") or []:
        developer = comment.get("developerComment") if isinstance(comment, Mapping) else None
        if isinstance(developer, Mapping) and developer.get("text"):
            return str(developer["text"])
    return None


def _modified(review: Any) -> int | None:
    user = _user_comment(review) if isinstance(review, Mapping) else None
    return _int((user.get("lastModified") or {}).get("seconds")) if user else None


def _id(review: Any) -> str:
    return str(review.get("reviewId")) if isinstance(review, Mapping) else ""


def _review_id(target: ReplyTarget) -> str:
    review_id = target.raw.get("review_id") or target.thread_id
    if not review_id:
        raise ReplyNotAllowed("this review was stored without its Google Play review id")
    return str(review_id)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _label(review: Any) -> str | None:
    if isinstance(review, Mapping) and review.get("reviewId"):
        return f"review reviewId={review['reviewId']!r}"
    return None

"""An inbound webhook: Zapier, Make or any custom source pushes mentions to `POST /webhooks/NAME`.

Never polled (`receives_pushes`): `triage serve` receives the requests, this module checks them
and maps the body. Signature (the default, `options.signature = "timestamped"`):

    X-Triage-Timestamp: <unix seconds>
    X-Triage-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>" with the secret>

A request more than five minutes off our clock is refused, so a captured request cannot be
replayed later. Tools that can only sign the body (GitHub-style `X-Hub-Signature-256:
sha256=<hex HMAC of the body>`) work with `options.signature = "body"`; a replayed body only
delivers mentions the store already has (they are deduplicated by id), but prefer the default.

The body is JSON: one mention object, a list of them, or `{"mentions": [...]}`. Each has `id` and
`text`, and may have `url`, `author_name`, `author_handle`, `author_reach`, `created_at` (ISO
8601), `rating`, `title`, `thread_id`, `parent_id`, `platform` and `engagement`. A malformed
mention is skipped with a log line; the rest are kept. There is no reply API behind a webhook:
agents answer where the mention lives and mark the case replied.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, ClassVar

from connectors.base import Connector, Page, PayloadError
from triage.clock import as_utc, utcnow
from triage.config import ConnectorSettings
from triage.domain import NewMention

MAX_BODY_BYTES = 1_000_000
MAX_AGE_SECONDS = 5 * 60
MAX_TIMESTAMP_DIGITS = 12
MIN_SECRET_LENGTH = 16
SIGNATURES = ("timestamped", "body")
TIMESTAMP_HEADER = "x-triage-timestamp"
SIGNATURE_HEADER = "x-triage-signature"
BODY_SIGNATURE_HEADER = "x-hub-signature-256"
_TEXT_FIELDS = ("url", "author_name", "author_handle", "title", "thread_id", "parent_id")


class SignatureRejected(Exception):
    """The request is not signed with this webhook's secret, or is too old."""


class WebhookConnector(Connector):
    """Mentions pushed to triage by another tool."""

    type = "webhook"
    platform = "webhook"
    uses_queries = False
    receives_pushes = True
    optional_options = ("platform", "signature")
    required_credentials = ("secret",)
    expected: ClassVar[Mapping[str, str]] = {
        "secret": f"a random shared secret of at least {MIN_SECRET_LENGTH} characters "
        "(e.g. from `openssl rand -hex 32`)",
        "platform": "the platform name stored with the mentions, e.g. trustpilot or zendesk",
        "signature": 'one of "timestamped" (default) or "body"',
    }

    @classmethod
    def check_settings(cls, settings: ConnectorSettings) -> list[str]:
        problems = super().check_settings(settings)
        prefix = f"connectors[{settings.name}]"
        secret = settings.credentials.get("secret") or ""
        if secret.strip() and len(secret) < MIN_SECRET_LENGTH:
            problems.append(
                f"{prefix}.credentials.secret: only {len(secret)} characters; "
                f"expected {cls.expected['secret']}"
            )
        signature = settings.options.get("signature")
        if signature is not None and signature not in SIGNATURES:
            problems.append(
                f"{prefix}.options.signature: {signature!r} is not valid; "
                f"expected {cls.expected['signature']}"
            )
        platform = settings.options.get("platform")
        if platform is not None and not (isinstance(platform, str) and platform.strip()):
            problems.append(
                f"{prefix}.options.platform: {platform!r} is not valid; "
                f"expected {cls.expected['platform']}"
            )
        return problems

    @property
    def source_platform(self) -> str:
        return str(self.options.get("platform") or self.platform).strip()

    def pages(self, cursor: str | None) -> Iterator[Page]:
        """Nothing to poll: mentions arrive through `triage serve`."""
        return iter(())

    def verify(
        self, body: bytes, headers: Mapping[str, str], *, now: float | None = None
    ) -> int | None:
        """Raise SignatureRejected unless signed with the secret; the signed unix time, if any."""
        lowered = {key.lower(): value for key, value in headers.items()}
        secret = self.credentials["secret"].encode()
        if self.options.get("signature", "timestamped") == "body":
            given = lowered.get(BODY_SIGNATURE_HEADER, "")
            expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(given.encode(), expected.encode()):
                raise SignatureRejected(f"missing or wrong {BODY_SIGNATURE_HEADER} header")
            return None
        stamp = lowered.get(TIMESTAMP_HEADER, "")
        given = lowered.get(SIGNATURE_HEADER, "")
        if not stamp or not given:
            raise SignatureRejected(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
        # ASCII digits of a sane length only: int() takes other scripts' digits, and a huge
        # number overflows the float subtraction (an unauthenticated 500).
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= MAX_TIMESTAMP_DIGITS):
            raise SignatureRejected(f"{TIMESTAMP_HEADER} is not unix seconds")
        age = abs((now if now is not None else utcnow().timestamp()) - int(stamp))
        if age > MAX_AGE_SECONDS:
            raise SignatureRejected("the timestamp is more than five minutes off (replay?)")
        expected = "sha256=" + sign(secret, stamp, body)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise SignatureRejected("the signature does not match the secret")
        return int(stamp)

    def parse(self, body: bytes) -> list[NewMention]:
        """The mentions in a request body; PayloadError if it holds none that can be read."""
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise PayloadError(f"the body is not JSON ({exc})") from exc
        if isinstance(data, Mapping) and "mentions" in data:
            data = data["mentions"]
        items = data if isinstance(data, list) else [data]
        mentions = self.map_items(items, self._mention)
        if not mentions:
            raise PayloadError("the body holds no mention with an id and a text")
        return mentions

    def _mention(self, item: Any) -> NewMention:
        if not isinstance(item, Mapping):
            raise PayloadError(f"a mention is a {type(item).__name__}, not an object")
        external_id = str(item["id"]).strip()
        text = item["text"]
        if not external_id or not isinstance(text, str) or not text.strip():
            raise PayloadError("a mention needs a non-empty id and text")
        extra = {key: str(item[key]) for key in _TEXT_FIELDS if item.get(key) not in (None, "")}
        platform = item.get("platform")
        return NewMention(
            source=self.name,
            external_id=external_id,
            platform=str(platform).strip() if platform else self.source_platform,
            text=text.strip(),
            author_reach=_count(item.get("author_reach"), "author_reach"),
            engagement=_count(item.get("engagement"), "engagement"),
            rating=_rating(item.get("rating")),
            created_at=_time(item.get("created_at")),
            raw=dict(item),
            **extra,
        )


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of "<timestamp>.<body>": what a sender puts after "sha256="."""
    return hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _count(value: Any, name: str) -> int | None:
    if value in (None, ""):
        return None
    # JSON allows 1e400 (inf) and NaN; int() of those raises OverflowError, not a skip.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or value < 0
        or (isinstance(value, float) and not value.is_integer())
    ):
        raise PayloadError(f"{name} {value!r} is not a whole number")
    return int(value)


def _rating(value: Any) -> float | None:
    if value in (None, ""):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 5:
        raise PayloadError(f"rating {value!r} is not a number from 0 to 5")
    return float(value)


def _time(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise PayloadError(f"created_at {value!r} is not an ISO 8601 time")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise PayloadError(f"created_at {value!r} is not an ISO 8601 time") from exc
    try:
        return as_utc(moment)
    except ValueError as exc:
        raise PayloadError(f"created_at {value!r} cannot be represented in UTC") from exc

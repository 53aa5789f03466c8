"""Slack request signatures (v0): HMAC-SHA256 of "v0:<timestamp>:<body>" with the signing secret.

https://api.slack.com/authentication/verifying-requests-from-slack: a request older than five
minutes is refused (replay), and the signature is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from triage.clock import utcnow

MAX_AGE_SECONDS = 5 * 60
MAX_TIMESTAMP_DIGITS = 12


class SignatureError(Exception):
    """The request did not come from Slack, or came too late; the message says which."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The v0 signature Slack sends for `body` at `timestamp`."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def verify(secret: str, headers: Mapping[str, str], body: bytes) -> int:
    """Raise SignatureError unless `body` is signed with `secret` within five minutes; its time."""
    lowered = {key.lower(): value for key, value in headers.items()}
    timestamp = lowered.get("x-slack-request-timestamp")
    signature = lowered.get("x-slack-signature")
    if not timestamp or not signature:
        raise SignatureError("missing X-Slack-Request-Timestamp or X-Slack-Signature")
    # ASCII digits of a sane length only: int() takes other scripts' digits, and a huge number
    # overflows the float subtraction (an unauthenticated 500). The value is not echoed back.
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= MAX_TIMESTAMP_DIGITS):
        raise SignatureError("X-Slack-Request-Timestamp is not a number of seconds")
    if abs(utcnow().timestamp() - int(timestamp)) > MAX_AGE_SECONDS:
        raise SignatureError("the request is more than five minutes old (or the clock is off)")
    if not hmac.compare_digest(sign(secret, timestamp, body).encode(), signature.encode()):
        raise SignatureError("the signature does not match the signing secret")
    return int(timestamp)

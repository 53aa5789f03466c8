"""The one httpx client factory and the one retry policy, with the errors they raise.

    ConnectorError             anything that stops a connector run
    ├── AuthError              401/403: fatal, no retries; the connector is unhealthy until
    │                          its credentials are fixed
    ├── RateLimitedError       429, retriable; raised once attempts are used up or the server
    │                          asks for a longer wait than the policy allows (`retry_after`)
    ├── TransientError         5xx, timeouts, dropped connections; retriable, raised once
    │                          attempts are used up
    ├── PermanentError         any other 4xx (and a few transport faults): fatal, no retries
    └── PayloadError           a response or file that is not what the connector expects

`ERROR_TABLE` maps status codes and exception types to these classes; `send` consults only it.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import httpx

from triage import __version__
from triage.clock import utcnow

DEFAULT_USER_AGENT = f"triage/{__version__} (+https://github.com/triage-care/triage)"
CONNECT_TIMEOUT = 10.0

# How much of an error response's body an error keeps for the connector to inspect.
BODY_KEPT = 4096

# Epoch seconds are told apart from seconds-to-wait by size: nothing waits 30 years.
_EPOCH_THRESHOLD = 1_000_000_000


class ConnectorError(Exception):
    """A failure that stops a connector run; `retriable` says whether trying again can help."""

    retriable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        body: str | None = None,
        uncertain: bool = False,
    ):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        # The response body (first few KB), for connectors that read the platform's error code.
        self.body = body
        # True when the request may have taken effect (a POST that timed out or got a 5xx).
        self.uncertain = uncertain


class AuthError(ConnectorError):
    """The platform refused the credentials (401/403)."""


class RateLimitedError(ConnectorError):
    """The platform is rate limiting us (429); `retry_after` is its wait in seconds, if known."""

    retriable = True


class TransientError(ConnectorError):
    """A server or network fault that usually passes (5xx, timeouts, dropped connections)."""

    retriable = True


class PermanentError(ConnectorError):
    """A request the platform will keep refusing (4xx other than 401/403/408/429)."""


class PayloadError(ConnectorError):
    """A response body or file that cannot be understood."""


@dataclass(frozen=True, slots=True)
class Rule:
    """What a status code or exception type means: the error class and a hint for the reader."""

    error: type[ConnectorError]
    hint: str


ErrorKey = int | str | type[Exception]

# Exact codes win over the "4xx"/"5xx" class entries; exception types match along their MRO.
ERROR_TABLE: Mapping[ErrorKey, Rule] = {
    401: Rule(AuthError, "unauthorized"),
    403: Rule(AuthError, "forbidden"),
    404: Rule(PermanentError, "not found; check the URL or id in the connector's options"),
    408: Rule(TransientError, "request timeout"),
    429: Rule(RateLimitedError, "rate limited"),
    500: Rule(TransientError, "internal server error"),
    501: Rule(PermanentError, "not implemented by the server"),
    502: Rule(TransientError, "bad gateway"),
    503: Rule(TransientError, "service unavailable"),
    504: Rule(TransientError, "gateway timeout"),
    "4xx": Rule(PermanentError, "client error"),
    "5xx": Rule(TransientError, "server error"),
    httpx.TimeoutException: Rule(TransientError, "timed out"),
    httpx.NetworkError: Rule(TransientError, "network error"),
    httpx.RemoteProtocolError: Rule(TransientError, "connection dropped"),
    httpx.ProxyError: Rule(TransientError, "proxy error"),
    httpx.UnsupportedProtocol: Rule(PermanentError, "unsupported URL scheme"),
    httpx.TooManyRedirects: Rule(PermanentError, "too many redirects"),
    httpx.DecodingError: Rule(PayloadError, "response body could not be decoded"),
    httpx.RequestError: Rule(TransientError, "request failed"),
}


def classify(outcome: int | BaseException) -> Rule | None:
    """The table's rule for a status code or exception; None for a successful status."""
    if isinstance(outcome, BaseException):
        for cls in type(outcome).__mro__:
            if cls in ERROR_TABLE:
                return ERROR_TABLE[cls]
        return None
    if outcome < 400:
        return None
    return ERROR_TABLE.get(outcome) or ERROR_TABLE.get(f"{outcome // 100}xx")


@dataclass(frozen=True, slots=True)
class RateLimitHeaders:
    """A pair of headers announcing how many calls are left and when the window resets."""

    remaining: str
    reset: str


# Reset values may be epoch seconds (GitHub, X), seconds to wait (Reddit, the IETF draft) or a
# timestamp (Mastodon); `parse_reset` tells them apart, so a platform needs only its header names.
RATE_LIMIT_HEADERS: tuple[RateLimitHeaders, ...] = (
    RateLimitHeaders(remaining="x-ratelimit-remaining", reset="x-ratelimit-reset"),
    RateLimitHeaders(remaining="x-rate-limit-remaining", reset="x-rate-limit-reset"),
    RateLimitHeaders(remaining="ratelimit-remaining", reset="ratelimit-reset"),
)


def parse_retry_after(value: str, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After value: delta seconds or an HTTP date."""
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return _until(when, now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def parse_reset(value: str, *, now: datetime | None = None) -> float | None:
    """Seconds until a rate-limit window resets, from epoch seconds, seconds or a timestamp."""
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            return parse_retry_after(value, now=now)
        return _until(when, now)
    if not math.isfinite(number):
        return None
    if number >= _EPOCH_THRESHOLD:
        return max(0.0, number - (now or utcnow()).timestamp())
    return max(0.0, number)


def server_wait(response: httpx.Response, *, now: datetime | None = None) -> float | None:
    """The wait the server asks for: Retry-After, else a rate-limit reset once none are left."""
    if "retry-after" in response.headers:
        wait = parse_retry_after(response.headers["retry-after"], now=now)
        if wait is not None:
            return wait
    for pair in RATE_LIMIT_HEADERS:
        remaining = response.headers.get(pair.remaining)
        reset = response.headers.get(pair.reset)
        if remaining is None or reset is None:
            continue
        try:
            exhausted = float(remaining) <= 0
        except ValueError:
            continue
        if exhausted:
            wait = parse_reset(reset, now=now)
            if wait is not None:
                return wait
    return None


def _until(when: datetime, now: datetime | None) -> float:
    moment = when if when.tzinfo else when.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or utcnow())).total_seconds())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry: exponential backoff with jitter, capped."""

    max_attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 60.0
    jitter: float = 0.25

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Delay after failed attempt number `attempt` (1-based), never above `max_delay`."""
        delay = self.base_delay * 2 ** (attempt - 1)
        delay += delay * self.jitter * rand()
        return min(delay, self.max_delay)


DEFAULT_POLICY = RetryPolicy()


def make_client(
    *,
    timeout: float = 20.0,
    user_agent: str | None = None,
    transport: httpx.BaseTransport | None = None,
    **kwargs: Any,
) -> httpx.Client:
    """An httpx client with triage's user agent, timeouts and redirect handling."""
    headers = {"User-Agent": user_agent or DEFAULT_USER_AGENT}
    headers.update(kwargs.pop("headers", None) or {})
    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)),
        follow_redirects=True,
        headers=headers,
        transport=transport,
        **kwargs,
    )


def send(
    client: httpx.Client,
    request: httpx.Request,
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], Any] = time.sleep,
    connector: str | None = None,
    idempotent: bool = True,
) -> httpx.Response:
    """Send with retries per ERROR_TABLE; return a response below 400 or raise ConnectorError.

    A request that is not `idempotent` (posting a reply) is retried only when the server surely
    did not act on it (429, a refused connection); otherwise the error is marked `uncertain`.
    """
    where = f"{request.method} {request.url.copy_with(query=None, fragment=None)}"
    attempt = 0
    while True:
        attempt += 1
        cause: Exception | None = None
        try:
            response = client.send(request)
        except httpx.HTTPError as exc:
            rule = classify(exc)
            if rule is None:
                raise
            error: ConnectorError = rule.error(f"{where}: {rule.hint} ({exc})")
            cause, wait = exc, None
        else:
            rule = classify(response.status_code)
            if rule is None:
                return response
            error = _response_error(rule, response, where, connector)
            wait = server_wait(response)

        if not idempotent and rule.error.retriable and _may_have_acted(cause, error.status):
            error.uncertain = True
            raise error from cause
        if not rule.error.retriable or attempt >= policy.max_attempts:
            error.retry_after = wait
            raise error from cause
        if wait is not None and wait > policy.max_delay:
            # Sleeping less than the server asked only earns another refusal: let the
            # scheduler come back later instead of holding the job.
            error.retry_after = wait
            raise error
        sleep(wait if wait is not None else policy.backoff(attempt))


def _may_have_acted(cause: Exception | None, status: int | None) -> bool:
    """Whether a retriable failure may hide a request the server carried out.

    429 and a connection never made are sure refusals; a 5xx, 408 or a read timeout are not.
    """
    if cause is None:
        return status != 429
    return not isinstance(cause, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def _response_error(
    rule: Rule, response: httpx.Response, where: str, connector: str | None
) -> ConnectorError:
    message = f"{where}: HTTP {response.status_code} {rule.hint}"
    if rule.error is AuthError:
        target = f"connector {connector!r}" if connector else "this connector"
        message += f"; check the credentials for {target} (expired token, missing scope?)"
    detail = " ".join(response.text.split())[:200] if not rule.error.retriable else ""
    if detail:
        message += f"; the server said: {detail}"
    return rule.error(message, status=response.status_code, body=response.text[:BODY_KEPT])

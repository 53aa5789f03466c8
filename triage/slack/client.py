"""The one Slack WebClient factory: the configured API address, waits out 429s.

Only rate-limit answers are retried inside a call: Slack did not act on them. A 5xx or a dropped
connection after chat.postMessage may hide a message that was posted, so the outbox, not the
client, decides what happens next (it looks for the message before posting again).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from triage import __version__
from triage.config import SlackSettings

# Seconds one HTTP attempt may take.
CALL_TIMEOUT = 15
# How often one call waits out a 429 (honouring Retry-After) before giving up.
RATE_LIMIT_RETRIES = 3
# Slack asks for seconds; a longer wait is cut so that one call never outlasts the outbox's
# claim on its message (triage/notify.py LEASE), after which another flush could post it again.
MAX_RATE_LIMIT_WAIT = 30
# The longest one call can take: every attempt timing out and every 429 waited out in full.
LONGEST_CALL_SECONDS = (RATE_LIMIT_RETRIES + 1) * CALL_TIMEOUT + RATE_LIMIT_RETRIES * (
    MAX_RATE_LIMIT_WAIT + 1
)


class CappedRateLimitHandler(RateLimitErrorRetryHandler):
    """Waits out a 429 as Retry-After asks, at most MAX_RATE_LIMIT_WAIT s (1 if unreadable)."""

    def __init__(self, *, max_retry_count: int, sleep: Callable[[float], Any] = time.sleep):
        super().__init__(max_retry_count=max_retry_count)
        self._sleep = sleep

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        if response is None:
            raise error  # type: ignore[misc]
        state.next_attempt_requested = True
        self._sleep(retry_after_seconds(response.headers) + random.random())
        state.increment_current_attempt()


def retry_after_seconds(headers: dict[str, Any]) -> float:
    """Retry-After as whole seconds within 1..MAX_RATE_LIMIT_WAIT; 1 when missing or garbage."""
    for name, values in headers.items():
        if name.lower() == "retry-after":
            value = values[0] if isinstance(values, list) and values else values
            text = str(value).strip()
            if text.isascii() and text.isdigit() and len(text) <= 6:
                return float(min(max(int(text), 1), MAX_RATE_LIMIT_WAIT))
            return 1.0
    return 1.0


def make_slack_client(
    settings: SlackSettings,
    *,
    timeout: int = CALL_TIMEOUT,
    sleep: Callable[[float], Any] = time.sleep,
) -> WebClient:
    """A WebClient on `[slack] api_url` with the bot token."""
    return WebClient(
        token=settings.bot_token,
        base_url=settings.api_url,
        timeout=timeout,
        user_agent_prefix=f"triage/{__version__}",
        retry_handlers=[CappedRateLimitHandler(max_retry_count=RATE_LIMIT_RETRIES, sleep=sleep)],
    )

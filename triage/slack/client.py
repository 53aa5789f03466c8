"""The one Slack WebClient factory: the configured API address, waits out 429s.

Only rate-limit answers are retried inside a call: Slack did not act on them. A 5xx or a dropped
connection after chat.postMessage may hide a message that was posted, so the outbox, not the
client, decides what happens next (it looks for the message before posting again).
"""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from triage import __version__
from triage.config import SlackSettings

# How often one call waits out a 429 (honouring Retry-After) before giving up.
RATE_LIMIT_RETRIES = 3


def make_slack_client(settings: SlackSettings, *, timeout: int = 15) -> WebClient:
    """A WebClient on `[slack] api_url` with the bot token."""
    return WebClient(
        token=settings.bot_token,
        base_url=settings.api_url,
        timeout=timeout,
        user_agent_prefix=f"triage/{__version__}",
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES)],
    )

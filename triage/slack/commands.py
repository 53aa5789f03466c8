"""`/triage` subcommands: queue, stats, connectors, pause and resume; answers in mrkdwn."""

from __future__ import annotations

import statistics
from datetime import datetime, time
from typing import TYPE_CHECKING

import sqlalchemy as sa

from triage.clock import utcnow
from triage.config import Settings
from triage.slack.text import escape, link
from triage.store import session_scope
from triage.store.queries import (
    connector_states,
    mention_counts,
    mentions_since,
    open_by_priority,
    open_queue,
    replied_since,
    sentiment_mix,
)
from triage.views import excerpt

if TYPE_CHECKING:
    from triage.slack.bot import SlackBot

QUEUE_SHOWN = 10


def run_command(bot: SlackBot, text: str, user: str) -> str:
    """The answer to `/triage <text>` for `user`."""
    from triage.slack.bot import HELP

    words = text.split()
    name = words[0].lower() if words else "help"
    if name == "queue":
        return queue_text(bot.engine)
    if name == "stats":
        return stats_text(bot.settings, bot.engine)
    if name == "connectors":
        return connectors_text(bot.settings, bot.engine)
    if name in ("pause", "resume"):
        if not bot.is_admin(user):
            return "Only admins (`[slack] admins`) may pause or resume connectors."
        if len(words) != 2:
            return f"Usage: `/triage {name} NAME`"
        return bot.pause(words[1], paused=name == "pause")
    return HELP


def queue_text(engine: sa.Engine) -> str:
    with session_scope(engine) as session:
        rows = open_queue(session, limit=QUEUE_SHOWN)
        counts = open_by_priority(session)
    if not rows:
        return "The queue is empty: nothing needs a human right now."
    total = sum(counts.values())
    bands = " · ".join(f"{band} {counts[band]}" for band in sorted(counts))
    lines = [f"*{total} open* ({bands}), worst first:"]
    for case, mention, analysis, _draft in rows:
        who = escape(mention.author_handle or mention.author_name or "someone")
        where = f" {link(mention.url, 'open')}" if mention.url else ""
        lines.append(
            f"• *{analysis.priority} {analysis.urgency}* {escape(mention.platform)} · {who}: "
            f"{escape(excerpt(mention.text, 80))}{where} (case {case.id})"
        )
    return "\n".join(lines)


def stats_text(settings: Settings, engine: sa.Engine, *, now: datetime | None = None) -> str:
    """Today (UTC) so far: volume, sentiment mix, first response, SLA breaches."""
    now = now or utcnow()
    midnight = datetime.combine(now.date(), time.min, tzinfo=now.tzinfo)
    with session_scope(engine) as session:
        volume = mentions_since(session, since=midnight)
        mix = sentiment_mix(session, since=midnight)
        replied = replied_since(session, since=midnight)
    analysed = sum(mix.values())
    share = {key: (mix.get(key, 0) / analysed if analysed else 0.0) for key in mix}
    net = share.get("positive", 0.0) - share.get("negative", 0.0)
    times = [case.first_response_seconds for case, _ in replied if case.first_response_seconds]
    breaches = sum(
        1
        for case, analysis in replied
        if case.first_response_seconds is not None
        and case.first_response_seconds > settings.sla.target(analysis.priority)
    )
    median = f"{statistics.median(times) / 60:.0f} min" if times else "no replies yet"
    mix_text = ", ".join(
        f"{key} {share.get(key, 0.0):.0%}" for key in ("negative", "neutral", "positive")
    )
    return (
        f"*Today so far* (since 00:00 UTC)\n"
        f"• {volume} mentions; {mix_text}; net sentiment {net:+.0%}\n"
        f"• {len(replied)} replied; median first response {median}\n"
        f"• {breaches} replied after their SLA target"
    )


def connectors_text(settings: Settings, engine: sa.Engine) -> str:
    with session_scope(engine) as session:
        states = connector_states(session)
        counts = mention_counts(session)
    if not settings.connectors:
        return "No connectors are configured."
    lines = ["*Connectors*"]
    for connector in settings.connectors:
        state = states.get(connector.name)
        lines.append(f"• {health_line(connector.name, connector.enabled, state, counts)}")
    return "\n".join(lines)


def health_line(name: str, enabled: bool, state: object, counts: dict[str, int]) -> str:
    """One connector's health in a line: ok, paused, failing (with the error), or not run yet."""
    fetched = counts.get(name, 0)
    if not enabled:
        return f"`{escape(name)}` disabled"
    if state is None or getattr(state, "last_run_at", None) is None:
        return f"`{escape(name)}` :white_circle: not run yet"
    if getattr(state, "paused", False):
        return f"`{escape(name)}` :double_vertical_bar: paused · {fetched} mentions"
    failures = getattr(state, "consecutive_failures", 0)
    success = getattr(state, "last_success_at", None)
    last = f"last success {success:%Y-%m-%d %H:%M} UTC" if success else "never succeeded"
    if failures:
        error = escape(str(getattr(state, "last_error", "") or ""))[:200]
        return f"`{escape(name)}` :red_circle: failing ({failures}x): {error} · {last}"
    return f"`{escape(name)}` :large_green_circle: ok · {fetched} mentions · {last}"

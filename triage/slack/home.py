"""The App Home tab: my cases, the queue at a glance, and connector health for admins."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from triage.slack.text import escape, link
from triage.store import session_scope
from triage.store.queries import assigned_open, connector_states, mention_counts, open_by_priority
from triage.views import excerpt


def home_view(
    engine: sa.Engine, *, user: str, admin: bool, connectors: list[Any] | None = None
) -> dict[str, Any]:
    """The Home tab view for `user` (views.publish)."""
    with session_scope(engine) as session:
        mine = assigned_open(session, user=user, limit=15)
        counts = open_by_priority(session)
        states = connector_states(session) if admin else {}
        fetched = mention_counts(session) if admin else {}
    blocks: list[dict[str, Any]] = [_header("My cases")]
    if mine:
        for case, mention, analysis in mine:
            where = f" · {link(mention.url, 'open')}" if mention.url else ""
            blocks.append(
                _section(
                    f"*{analysis.priority} {analysis.urgency}* {escape(mention.platform)} · "
                    f"{escape(excerpt(mention.text, 120))}{where} (case {case.id})"
                )
            )
    else:
        blocks.append(_section("Nothing assigned to you. Pick a card and press *Assign to me*."))
    blocks.append({"type": "divider"})
    blocks.append(_header("Queue"))
    total = sum(counts.values())
    bands = " · ".join(f"*{band}* {counts[band]}" for band in sorted(counts)) or "empty"
    blocks.append(_section(f"{total} open: {bands}"))
    if admin:
        from triage.slack.commands import health_line

        blocks.append({"type": "divider"})
        blocks.append(_header("Connectors"))
        known = [(c.name, c.enabled) for c in connectors or []] or [(n, True) for n in states]
        lines = [health_line(name, on, states.get(name), fetched) for name, on in known]
        blocks.append(_section("\n".join(lines) or "No connector has run yet."))
    return {"type": "home", "blocks": blocks[:100]}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": text}}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}

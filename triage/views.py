"""The open queue for people: a terminal table and a self-contained HTML page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from jinja2 import Environment, PackageLoader, select_autoescape
from rich.console import Console
from rich.table import Table
from rich.text import Text

from triage.clock import utcnow
from triage.links import web_url
from triage.store import Analysis, Case, Draft, Mention, session_scope
from triage.store.queries import open_by_priority, open_queue

EXCERPT_CHARS = 90
PRIORITY_STYLE = {"P1": "bold red", "P2": "yellow", "P3": "cyan", "P4": "dim"}


@dataclass(frozen=True, slots=True)
class QueueRow:
    case: Case
    mention: Mention
    analysis: Analysis
    draft: Draft | None

    @property
    def author(self) -> str:
        parts = [self.mention.author_name or "", self.mention.author_handle or ""]
        return " ".join(dict.fromkeys(part for part in parts if part)) or "unknown"

    @property
    def excerpt(self) -> str:
        return excerpt(self.mention.text)


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def load_queue(engine: sa.Engine, *, limit: int = 50) -> list[QueueRow]:
    with session_scope(engine) as session:
        return [QueueRow(*row) for row in open_queue(session, limit=limit)]


def open_count(engine: sa.Engine) -> int:
    """How many cases are open, whatever a listing shows of them."""
    with session_scope(engine) as session:
        return sum(open_by_priority(session).values())


def print_queue(rows: list[QueueRow], console: Console, *, total: int | None = None) -> None:
    """The queue, worst first, as a table; `total` open cases when more than the rows shown."""
    if not rows:
        console.print("The queue is empty: nothing needs a human right now.")
        return
    shown = f"{len(rows)} of {total} open" if total is not None and total > len(rows) else len(rows)
    table = Table(title=f"Open queue ({shown}), worst first", show_lines=False, expand=True)
    for column, options in (
        ("ID", {"justify": "right", "no_wrap": True}),
        ("Pri", {"no_wrap": True}),
        ("Score", {"justify": "right"}),
        ("Lang", {}),
        ("Sentiment", {}),
        ("Source", {}),
        ("Author", {"max_width": 22}),
        ("Mention", {"ratio": 3}),
        ("Why", {"ratio": 2}),
    ):
        table.add_column(column, **options)
    for row in rows:
        analysis = row.analysis
        # Every cell that may hold text from outside is a Text: never read as Rich markup.
        table.add_row(
            str(row.mention.id),
            Text(analysis.priority, style=PRIORITY_STYLE.get(analysis.priority, "")),
            str(analysis.urgency),
            Text(analysis.language),
            Text(f"{analysis.sentiment} {_confidence(analysis):.0%}"),
            Text(f"{row.mention.source}/{row.mention.platform}"),
            Text(row.author),
            Text(row.excerpt),
            Text("; ".join(analysis.reasons or [])),
        )
    console.print(table)


def _confidence(analysis: Analysis) -> float:
    return max(analysis.p_negative, analysis.p_neutral, analysis.p_positive)


def render_queue_html(rows: list[QueueRow], *, brand: str, now: datetime | None = None) -> str:
    """One self-contained HTML page: the queue with each draft."""
    environment = Environment(
        loader=PackageLoader("triage", "html"), autoescape=select_autoescape(["html", "j2"])
    )
    environment.filters["web_url"] = web_url
    template = environment.get_template("queue.html.j2")
    return template.render(rows=rows, brand=brand, generated=(now or utcnow()))

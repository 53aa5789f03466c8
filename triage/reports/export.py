"""The report as text (for Slack), a self-contained HTML file, or CSV rows."""

from __future__ import annotations

import base64
import csv
import dataclasses
from typing import TextIO

from jinja2 import Environment, PackageLoader, select_autoescape

from triage.reports.figures import Figures

CSV_FIELDS = (
    "mention_id", "created_at", "source", "platform", "language", "sentiment", "kind",
    "priority", "urgency", "intents", "status", "first_response_seconds",
    "resolution_seconds", "agent", "url", "text",
)  # fmt: skip
# A spreadsheet runs a cell that starts with one of these as a formula (=HYPERLINK, +cmd|...).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")


def percent(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.0f}%"


def duration(seconds: float | None) -> str:
    """4 min, 2.5 h, 3.0 days; – when there is nothing to measure."""
    if seconds is None:
        return "–"
    if seconds < 3600:
        return f"{max(1, round(seconds / 60))} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def summary(figures: Figures) -> str:
    """The headline figures in two or three sentences."""
    days = (figures.until - figures.since).days or 1
    parts = [f"{figures.volume} mentions in {days} day{'s' if days != 1 else ''}"]
    if figures.previous_volume:
        change = 100 * (figures.volume - figures.previous_volume) / figures.previous_volume
        parts[0] += f" ({change:+.0f}% on the period before)"
    if figures.net_sentiment is not None:
        net = f"net sentiment {figures.net_sentiment:+.0f}"
        if figures.previous_net_sentiment is not None:
            delta = figures.net_sentiment - figures.previous_net_sentiment
            net += f" ({delta:+.0f} points)"
        parts.append(net)
    if figures.complaint_categories:
        top = ", ".join(list(figures.complaint_categories)[:3])
        parts.append(f"top complaints: {top}")
    if figures.negative_topics:
        words = ", ".join(word for word, _ in figures.negative_topics[:5])
        parts.append(f"negative mentions talk about {words}")
    care = figures.care
    if care.replied:
        shares = care.within_sla.items()
        within = ", ".join(f"{band} {percent(s)}" for band, s in shares if s is not None)
        parts.append(
            f"first response median {duration(care.first_response_median)}, "
            f"p90 {duration(care.first_response_p90)}; within the SLA: {within}"
        )
    return "; ".join(parts) + "."


def to_html(figures: Figures, charts: dict[str, bytes], *, brand: str) -> str:
    """One self-contained page: charts embedded, the tables behind them, example mentions."""
    env = Environment(
        loader=PackageLoader("triage.reports", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
    )
    template = env.get_template("report.html.j2")
    return template.render(
        brand=brand,
        since=figures.since.strftime("%Y-%m-%d %H:%M"),
        until=figures.until.strftime("%Y-%m-%d %H:%M"),
        summary=summary(figures),
        figures=figures,
        charts={name: base64.b64encode(png).decode("ascii") for name, png in charts.items()},
        percent=percent,
        duration=duration,
    )


def write_csv(figures: Figures, out: TextIO) -> None:
    """One row per mention of the period, the numbers behind every chart, written to `out` as
    the store streams them."""
    writer = csv.writer(out)
    writer.writerow(CSV_FIELDS)
    for row in figures.iter_rows():
        values = dataclasses.asdict(row)
        values["intents"] = " ".join(row.intents)
        values["created_at"] = row.created_at.isoformat()
        writer.writerow([spreadsheet_safe(values[name]) for name in CSV_FIELDS])


def spreadsheet_safe(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: text that could start a formula gets a leading '."""
    if value is None:
        return ""
    if isinstance(value, str) and value.lstrip(" ").startswith(FORMULA_STARTS):
        return "'" + value
    return value

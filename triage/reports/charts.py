"""Report charts as PNG bytes: matplotlib (Agg), sized for Slack's preview, colour-blind safe."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

from triage.config import SlaSettings
from triage.reports.figures import PRIORITIES, Figures

# Okabe & Ito (2008): distinguishable with every common colour-vision deficiency.
NEGATIVE, NEUTRAL, POSITIVE = "#D55E00", "#999999", "#009E73"
BLUE, ORANGE, SKY, YELLOW = "#0072B2", "#E69F00", "#56B4E9", "#F0E442"
# 800 x 450 px: Slack shows images up to about this width without scaling text away.
SIZE, DPI = (8.0, 4.5), 100
# Bar charts keep room for at least this many bars, so one source or two languages are bars of
# the usual thickness at the top, not one block filling the chart.
MIN_BAR_SLOTS = 6
BAR_HEIGHT = 0.6


def render_all(figures: Figures, sla: SlaSettings) -> dict[str, bytes]:
    """Every chart of the report, by file stem."""
    charts: dict[str, Callable[[], bytes]] = {
        "sentiment-over-time": lambda: sentiment_over_time(figures),
        "volume-by-source": lambda: bars(figures.by_source, "Mentions by source", BLUE),
        "volume-by-language": lambda: bars(figures.by_language, "Mentions by language", SKY),
        "complaint-categories": lambda: bars(
            figures.complaint_categories, "Complaints by category", ORANGE
        ),
        "negative-topics": lambda: bars(
            dict(figures.negative_topics), "Top words in negative mentions", NEGATIVE
        ),
        "first-response": lambda: first_response(figures, sla),
    }
    return {name: draw() for name, draw in charts.items()}


def sentiment_over_time(figures: Figures) -> bytes:
    """Share of negative, neutral and positive mentions per day, stacked to 100%."""
    fig, ax = _figure()
    days = [day for day, *_ in figures.daily]
    totals = [max(1, neg + neu + pos) for _, neg, neu, pos in figures.daily]
    shares = [
        [100 * counts[i] / total for counts, total in zip(_counts(figures), totals, strict=True)]
        for i in range(3)
    ]
    labels = [day.strftime("%d %b") for day in days]
    ax.stackplot(
        range(len(days)),
        *shares,
        labels=["negative", "neutral", "positive"],
        colors=[NEGATIVE, NEUTRAL, POSITIVE],
    )
    ax.set_xticks(range(len(days)), labels, rotation=45 if len(days) > 10 else 0, ha="right")
    ax.set_ylim(0, 100)
    ax.set_ylabel("% of mentions")
    ax.set_title("Sentiment over time")
    if not figures.volume:
        ax.text(0.5, 0.5, "no mentions", transform=ax.transAxes, ha="center", va="center")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return _png(fig)


def bars(values: dict[str, int], title: str, colour: str, limit: int = 12) -> bytes:
    """Horizontal bars, largest on top, as thick however few there are; an empty chart says so."""
    from matplotlib.ticker import MaxNLocator

    fig, ax = _figure()
    items = list(values.items())[:limit][::-1]
    if items:
        ax.barh([str(k) for k, _ in items], [v for _, v in items], color=colour, height=BAR_HEIGHT)
        for y, (_, v) in enumerate(items):
            ax.text(v, y, f" {v}", va="center", fontsize=10)
        top = len(items) - 0.5
        ax.set_ylim(top - max(MIN_BAR_SLOTS, len(items)), top)
        ax.set_xlim(0, max(v for _, v in items) * 1.1)  # room for the number after the bar
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        ax.text(0.5, 0.5, "nothing in this period", transform=ax.transAxes, ha="center")
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title(title)
    ax.set_xlabel("mentions")
    return _png(fig)


def first_response(figures: Figures, sla: SlaSettings) -> bytes:
    """First-response times (minutes) per priority, with each priority's SLA target."""
    fig, ax = _figure()
    times = figures.care.first_responses
    data = [[s / 60 for s in times.get(band, [])] for band in PRIORITIES]
    if any(data):
        ax.boxplot(
            [d or [0.0] for d in data],
            tick_labels=list(PRIORITIES),
            orientation="horizontal",
            medianprops={"color": "black"},
        )
        for y, priority in enumerate(PRIORITIES, start=1):
            target = sla.target(priority) / 60
            ax.plot([target, target], [y - 0.35, y + 0.35], color=ORANGE, linewidth=2.5)
        ax.plot([], [], color=ORANGE, linewidth=2.5, label="SLA target")
        ax.legend(loc="lower right", frameon=False)
        ax.set_xscale("log")
    else:
        ax.text(0.5, 0.5, "no replies in this period", transform=ax.transAxes, ha="center")
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_xlabel("minutes to first response")
    ax.set_title("First response against the SLA")
    return _png(fig)


def _counts(figures: Figures) -> Sequence[tuple[int, int, int]]:
    return [(neg, neu, pos) for _, neg, neu, pos in figures.daily]


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=SIZE, dpi=DPI)
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()

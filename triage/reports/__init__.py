"""Sentiment reports for marketing and care metrics for team leads: the last stage of the flow."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from triage.config import Settings
from triage.reports.charts import render_all
from triage.reports.export import summary, to_html, write_csv
from triage.reports.figures import Figures, compute

__all__ = ["Report", "build_report"]


@dataclass
class Report:
    """The figures of one period and their charts, ready to write or post."""

    figures: Figures
    charts: dict[str, bytes]
    brand: str

    @property
    def summary(self) -> str:
        return summary(self.figures)

    def html(self) -> str:
        return to_html(self.figures, self.charts, brand=self.brand)

    def write(self, out: Path, format: str) -> list[Path]:
        """Write html (one file), csv (one file) or png (one file per chart in folder `out`)."""
        if format == "html":
            out.write_text(self.html(), "utf-8")
            return [out]
        if format == "csv":
            # The only output with every row: they are read from the store now, as written.
            with out.open("w", encoding="utf-8", newline="") as file:
                write_csv(self.figures, file)
            return [out]
        if format == "png":
            out.mkdir(parents=True, exist_ok=True)
            written = []
            for name, png in self.charts.items():
                path = out / f"{name}.png"
                path.write_bytes(png)
                written.append(path)
            return written
        raise ValueError(f"{format!r}: expected html, csv or png")


def build_report(engine: sa.Engine, settings: Settings, since: datetime, until: datetime) -> Report:
    """Compute the figures for [since, until) and draw the charts."""
    brand = settings.brand
    words = [brand.name, *brand.keywords, *brand.handles]
    figures = compute(engine, since, until, settings.sla, brand_words=words)
    return Report(figures, render_all(figures, settings.sla), settings.brand.name)

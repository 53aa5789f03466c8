"""Batch scoring of a file: `triage score` streams rows through the analyze stage to JSONL."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from connectors.registry import build_connector
from triage.analyze import AnalysisInput, AnalysisOutput, Analyzer
from triage.config import ConnectorSettings, Settings
from triage.domain import NewMention


@dataclass
class ScoreCounts:
    scored: int = 0
    skipped: int = 0


def score_file(
    settings: Settings, path: Path, sink: TextIO, *, progress: bool = False
) -> ScoreCounts:
    """Read JSONL or CSV rows (bad ones skipped and logged), write one JSON line per scored row."""
    analyzer = Analyzer(settings)
    counts = ScoreCounts()
    total_rows = _count_rows(path)
    with _progress(progress, total_rows) as advance:
        for mentions in _batches(path, settings.models.batch_size * 4):
            inputs = [AnalysisInput.of(mention) for mention in mentions]
            for mention, output in zip(mentions, analyzer.analyze(inputs), strict=True):
                sink.write(json.dumps(_record(mention, output), ensure_ascii=False) + "\n")
            counts.scored += len(mentions)
            advance(len(mentions))
    counts.skipped = max(0, total_rows - counts.scored)
    return counts


def _batches(path: Path, size: int) -> Iterator[list[NewMention]]:
    reader = ConnectorSettings(name="score", type="file", options={"path": str(path)})
    pending: list[NewMention] = []
    with build_connector(reader) as source:
        for batch in source.fetch(None):
            pending.extend(batch.mentions)
            while len(pending) >= size:
                yield pending[:size]
                pending = pending[size:]
    if pending:
        yield pending


def _record(mention: NewMention, output: AnalysisOutput) -> dict[str, Any]:
    urgency = output.urgency
    return {
        "id": mention.external_id,
        "platform": mention.platform,
        "language": output.language.code,
        "language_confidence": output.language.confidence,
        "sentiment": output.sentiment.label,
        "probabilities": {k: round(v, 4) for k, v in output.sentiment.probabilities.items()},
        "complaint_probability": urgency.complaint_probability,
        "kind": urgency.kind,
        "intents": urgency.intents,
        "urgency": urgency.score,
        "priority": urgency.priority,
        "escalate": urgency.escalate,
        "reasons": urgency.reasons,
    }


def _count_rows(path: Path) -> int:
    with path.open("rb") as handle:
        lines = sum(1 for line in handle if line.strip())
    return lines - 1 if path.suffix.lower() == ".csv" else lines


@contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on a terminal; a no-op elsewhere."""
    if not enabled:
        yield lambda _n: None
        return
    columns = (TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("score", total=total)
        yield lambda n: bar.advance(task, n)

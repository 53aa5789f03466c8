"""Batch scoring of a file: `triage score` streams records through the analyze stage to JSONL."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from connectors.file import FileConnector
from triage.analyze import AnalysisInput, AnalysisOutput, Analyzer
from triage.config import ConnectorSettings, Settings
from triage.domain import NewMention


@dataclass
class ScoreCounts:
    records: int = 0
    scored: int = 0
    skipped: int = 0


def score_file(
    settings: Settings, path: Path, sink: TextIO, *, progress: bool = False
) -> ScoreCounts:
    """Read a .jsonl or .csv file's records (bad ones skipped and logged), write one JSON line
    per scored record; the models are loaded only once there is a record to score."""
    reader = ConnectorSettings(name="score", type="file", options={"path": str(path)})
    with FileConnector(reader) as source:
        counts = ScoreCounts(records=source.count())
        if not counts.records:
            return counts
        analyzer: Analyzer | None = None
        with _progress(progress, counts.records) as advance:
            for mentions in _batches(source, settings.models.batch_size * 4):
                analyzer = analyzer or Analyzer(settings)
                inputs = [AnalysisInput.of(mention) for mention in mentions]
                for mention, output in zip(mentions, analyzer.analyze(inputs), strict=True):
                    sink.write(json.dumps(_record(mention, output), ensure_ascii=False) + "\n")
                counts.scored += len(mentions)
                advance(len(mentions))
    counts.skipped = counts.records - counts.scored
    return counts


def _batches(source: FileConnector, size: int) -> Iterator[list[NewMention]]:
    pending: list[NewMention] = []
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

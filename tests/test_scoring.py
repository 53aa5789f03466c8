"""`triage score` in process: records counted as records, no model for nothing to score."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

import triage.scoring
from triage.analyze import AnalysisInput
from triage.config import default_settings
from triage.scoring import score_file

LOGGER = "triage.connectors.score"


class FakeAnalyzer:
    """Stands in for the models: counts how often it was loaded."""

    loads = 0

    def __init__(self, _settings) -> None:
        FakeAnalyzer.loads += 1

    def analyze(self, inputs: list[AnalysisInput]) -> list[None]:
        return [None] * len(inputs)


@pytest.fixture
def fake_models(monkeypatch: pytest.MonkeyPatch) -> type[FakeAnalyzer]:
    FakeAnalyzer.loads = 0
    monkeypatch.setattr(triage.scoring, "Analyzer", FakeAnalyzer)
    monkeypatch.setattr(
        triage.scoring, "_record", lambda mention, _output: {"id": mention.external_id}
    )
    return FakeAnalyzer


def score(path: Path) -> tuple[triage.scoring.ScoreCounts, list[str]]:
    sink = io.StringIO()
    counts = score_file(default_settings("sqlite://"), path, sink)
    return counts, [json.loads(line)["id"] for line in sink.getvalue().splitlines()]


def test_records_are_counted_not_lines(
    tmp_path: Path, fake_models: type[FakeAnalyzer], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "export.csv"
    path.write_text(
        'id,text\na,"line one\nline two\n\nline four"\nb,fine\nc,\nd,"also\nfine"\n',
        encoding="utf-8",
    )
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        counts, ids = score(path)
    assert ids == ["a", "b", "d"]
    assert (counts.scored, counts.skipped) == (3, 1)  # no phantom skips for the extra lines
    assert counts.records == 4
    # The skipped record is named by the line it starts on, after a record of four lines.
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        f"skipped {path}:7: no text"
    ]
    assert fake_models.loads == 1


@pytest.mark.parametrize(
    ("name", "content"),
    [("empty.jsonl", ""), ("blank.jsonl", "\n\n"), ("header.csv", "id,text\n"), ("empty.csv", "")],
)
def test_nothing_to_score_loads_no_model(
    tmp_path: Path, fake_models: type[FakeAnalyzer], name: str, content: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    counts, ids = score(path)
    assert fake_models.loads == 0
    assert ids == [] and (counts.records, counts.scored, counts.skipped) == (0, 0, 0)


def test_only_bad_records_load_no_model(tmp_path: Path, fake_models: type[FakeAnalyzer]) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "text": ""}\n{not json\n', encoding="utf-8")
    counts, ids = score(path)
    assert fake_models.loads == 0
    assert ids == [] and (counts.records, counts.scored, counts.skipped) == (2, 0, 2)

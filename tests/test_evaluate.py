"""`triage eval` measures the real models on benchmark-shaped files and writes the model card."""

from __future__ import annotations

import pytest

from tests.conftest import write_jsonl
from triage.evaluate import FILES, draft_on_topic, evaluate, model_card, read_benchmark

pytestmark = pytest.mark.model

COMPLAINTS = [
    ("@KestrelHelp you charged me twice for my order, I want a refund now", "complaint", 3),
    (
        "@KestrelHelp my parcel is two weeks late and nobody answers, this is a disgrace",
        "complaint",
        4,
    ),
    ("@KestrelHelp thank you so much, the new app is lovely!", "not_complaint", 0),
    ("@KestrelHelp what time do you open on Sunday?", "not_complaint", 0),
]


@pytest.fixture
def benchmarks(tmp_path):
    for name in FILES.values():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    sentiment = [
        {"text": "I love this, best service ever!", "label": "positive", "lang": "en"},
        {"text": "This is awful, I hate it.", "label": "negative", "lang": "en"},
        {"text": "C'est nul, je déteste ce service.", "label": "negative", "lang": "fr"},
        {"text": "J'adore, merci beaucoup !", "label": "positive", "lang": "fr"},
    ]
    write_jsonl(tmp_path / FILES["umsab"], sentiment)
    write_jsonl(tmp_path / FILES["tweeteval"], sentiment[:2])
    write_jsonl(
        tmp_path / FILES["ltec"],
        [{"text": "Paldies, ļoti patīk!", "label": "positive", "lang": "lv"}],
    )
    write_jsonl(
        tmp_path / FILES["complaints"],
        [{"text": text, "label": label, "lang": "en"} for text, label, _ in COMPLAINTS],
    )
    write_jsonl(
        tmp_path / FILES["severity"],
        [{"text": text, "severity": severity, "lang": "en"} for text, _, severity in COMPLAINTS],
    )
    return tmp_path


def test_every_row_is_measured_and_the_card_is_written(analyzer, benchmarks):
    report = evaluate(analyzer, benchmarks)
    rows = {row.benchmark: row for row in report.rows}
    assert list(rows) == [
        "UMSAB en",
        "UMSAB fr",
        "LTEC lv",
        "TweetEval",
        "Complaints (Preotiuc-Pietro 2019)",
        "X-CI severity 0-4",
    ]
    assert (rows["UMSAB en"].n, rows["UMSAB fr"].n, rows["LTEC lv"].n) == (2, 2, 1)
    assert rows["UMSAB en"].target == 70.6 and rows["X-CI severity 0-4"].target is None
    # Clear-cut complaints and non-complaints are told apart, and severity rises with urgency.
    assert rows["Complaints (Preotiuc-Pietro 2019)"].ours == 100.0
    assert rows["X-CI severity 0-4"].ours > 0
    assert report.language_accuracy["fr"] == (100.0, 2)
    polish, count = report.language_accuracy["pl (hand-written)"]
    assert count >= 100 and polish >= 90.0
    assert report.complaint_detail["recall"] == 100.0 and report.complaint_detail["auc"] == 1.0
    assert sum(sum(row) for row in report.confusions["en"]) == 2
    assert 0.0 <= report.calibration["en"] <= 1.0
    assert report.throughput > 0

    card = model_card(report)
    assert "| Complaints (Preotiuc-Pietro 2019) | macro-F1 | 100.0 |" in card
    assert "## Known weaknesses" in card
    assert "| pl (hand-written) |" in card and "precision 100.0%, recall 100.0%" in card


def test_limit_takes_the_first_rows_of_each_language(benchmarks):
    rows = read_benchmark(benchmarks / FILES["umsab"], limit=1)
    assert [row["lang"] for row in rows] == ["en", "fr"]


def test_missing_benchmark_files_are_named(analyzer, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"xlmt-umsab-sentiment/test\.jsonl"):
        evaluate(analyzer, tmp_path)


@pytest.mark.parametrize(
    ("generator", "labels", "on_topic"),
    [
        ("template:complaint:en:delivery", ("delivery", "repeat_contact"), True),
        ("template:complaint:de:billing", ("refund",), False),
        ("template:holding:fr:legal", ("privacy",), False),
        ("template:holding:fr:press", ("press",), True),
        ("template:complaint:en:security", ("fraud",), True),
        # The general step fits a complaint with no problem of its own step ("churn", "service"
        # has one: it would be off topic there).
        ("template:complaint:pl:default", ("churn", "repeat_contact"), True),
        ("template:complaint:pl:default", ("service",), False),
    ],
)
def test_a_draft_is_on_topic_when_its_step_answers_a_labelled_problem(generator, labels, on_topic):
    assert draft_on_topic(generator, labels) is on_topic

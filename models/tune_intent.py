"""Choose the intent model's settings on a held-out validation set of hand-written mentions.

    .venv/bin/python -m models.tune_intent

The nearest-example model votes from `models/data/intent_examples.jsonl`; the settings are scored
on `models/data/intent_validation.jsonl`, written separately (other brands, other sectors, not
translations of one another or of the examples). The complaint verdict mixes the neighbours' vote
(or a logistic head fitted on the examples) with the cue blend in models/urgency.py. The
benchmarks are never used here: they only measure the chosen setting (`triage eval`).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from models.intent import EXAMPLES, INTENTS, Example, fit_logistic, read_examples
from models.metrics import macro_f1
from models.sentiment import get_sentiment_model
from models.urgency import Signals, UrgencyScorer

VALIDATION = Path(__file__).parent / "data" / "intent_validation.jsonl"
SHARES = (0.0, 0.25, 0.5, 0.6, 0.75, 0.9, 1.0)
NEIGHBOURS = (3, 5, 7, 11, 15)
TEMPERATURES = (0.01, 0.02, 0.05)


def knn_votes(
    similarity: np.ndarray, labels: np.ndarray, k: int, temperature: float, classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights and indices of the k nearest examples, and their intent tally; softmax-weighted.

    Complaint share and intent tally of the k nearest examples, softmax-weighted."""
    nearest = np.argsort(-similarity, axis=1)[:, :k]
    close = np.take_along_axis(similarity, nearest, axis=1)
    weights = np.exp((close - close.max(1, keepdims=True)) / temperature)
    weights /= weights.sum(1, keepdims=True)
    tally = np.zeros((len(similarity), classes))
    for row in range(len(similarity)):
        np.add.at(tally[row], labels[nearest[row]], weights[row])
    return weights, nearest, tally


def cue_blend(examples: list[Example], negative: np.ndarray) -> np.ndarray:
    scorer = UrgencyScorer()
    return np.array(
        [
            scorer.score(Signals(e.text, e.lang, float(p), 0.0)).complaint_probability
            for e, p in zip(examples, negative, strict=True)
        ]
    )


def main() -> None:
    bank, val = read_examples(EXAMPLES), read_examples(VALIDATION)
    model = get_sentiment_model()
    bank_emb = model.encoder.embed([e.text for e in bank])
    val_emb = model.encoder.embed([e.text for e in val])
    negative = np.array([r.probabilities["negative"] for r in model.predict_embeddings(val_emb)])
    cues = cue_blend(val, negative)
    truth = np.array([e.complaint for e in val], dtype=int)
    intents = np.array([INTENTS.index(e.intent) for e in val])
    bank_complaint = np.array([e.complaint for e in bank], dtype=float)
    bank_intents = np.array([INTENTS.index(e.intent) for e in bank])
    similarity = val_emb @ bank_emb.T
    f1_cues = macro_f1(truth, (cues >= 0.5).astype(int), 2)
    print(f"{len(bank)} examples, {len(val)} validation mentions")
    print(f"cue blend alone: complaint macro-F1 {100 * f1_cues:.1f}")
    rows = []
    for k, temperature in itertools.product(NEIGHBOURS, TEMPERATURES):
        weights, nearest, tally = knn_votes(similarity, bank_intents, k, temperature, len(INTENTS))
        vote = (weights * bank_complaint[nearest]).sum(1)
        accuracy = float(np.mean(tally.argmax(1) == intents))
        for share in SHARES:
            mixed = share * vote + (1 - share) * cues
            f1 = macro_f1(truth, (mixed >= 0.5).astype(int), 2)
            rows.append((f1, accuracy, k, temperature, share))
    for l2 in (1e-5, 1e-4, 1e-3):
        w, b = fit_logistic(bank_emb, bank_complaint, l2)
        head = 1 / (1 + np.exp(-(val_emb @ w + b)))
        for share in SHARES:
            mixed = share * head + (1 - share) * cues
            f1 = macro_f1(truth, (mixed >= 0.5).astype(int), 2)
            print(f"complaints from the logistic head l2={l2:g} share={share:.2f}: {100 * f1:.1f}")
    print("intent accuracy of the neighbours' vote:")
    seen = set()
    for _f1, accuracy, k, temperature, _share in sorted(rows, key=lambda r: (-r[1], r[2], r[3])):
        if (k, temperature) not in seen and len(seen) < 6:
            seen.add((k, temperature))
            print(f"k={k:2d} t={temperature:.2f}: {100 * accuracy:.1f}")
    rows.sort(reverse=True)
    print("complaints from the neighbours' vote: complaint macro-F1 / intent accuracy")
    for f1, accuracy, k, temperature, share in rows[:15]:
        setting = f"k={k:2d} t={temperature:.2f} share={share:.2f}"
        print(f"{setting}: {100 * f1:.1f} / {100 * accuracy:.1f}")


if __name__ == "__main__":
    main()

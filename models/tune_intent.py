"""Choose the intent model's settings by leave-one-out on the hand-written examples.

    .venv/bin/python -m models.tune_intent

For each example, its neighbours are the other examples (never itself); the complaint verdict
mixes the neighbours' vote with the cue blend in models/urgency.py at several shares. Prints
leave-one-out complaint macro-F1 and intent accuracy per setting. The benchmarks are never
used here: they only measure the chosen setting (`triage eval`).
"""

from __future__ import annotations

import itertools

import numpy as np

from models.intent import INTENTS, TEMPERATURE, read_examples
from models.metrics import macro_f1
from models.sentiment import get_sentiment_model
from models.urgency import Signals, UrgencyScorer

SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)
NEIGHBOURS = (3, 5, 7, 11)


def main() -> None:
    examples = read_examples()
    model = get_sentiment_model()
    embeddings = model.encoder.embed([e.text for e in examples])
    negative = np.array([r.probabilities["negative"] for r in model.predict_embeddings(embeddings)])
    scorer = UrgencyScorer()
    truth = np.array([e.complaint for e in examples], dtype=int)
    intents = np.array([INTENTS.index(e.intent) for e in examples])
    similarity = embeddings @ embeddings.T
    np.fill_diagonal(similarity, -np.inf)  # leave one out
    print(f"{len(examples)} examples; LOO complaint macro-F1 / intent accuracy")
    for k, share in itertools.product(NEIGHBOURS, SHARES):
        votes, guesses = [], []
        for i, example in enumerate(examples):
            idx = np.argsort(-similarity[i])[:k]
            weights = np.exp((similarity[i, idx] - similarity[i, idx].max()) / TEMPERATURE)
            weights /= weights.sum()
            tally = np.zeros(len(INTENTS))
            np.add.at(tally, intents[idx], weights)
            guesses.append(int(tally.argmax()))
            # The cue blend alone (no model_complaint), then mixed at this share.
            cues = scorer.score(
                Signals(example.text, example.lang, float(negative[i]), 0.0)
            ).complaint_probability
            mixed = share * float(weights @ truth[idx]) + (1 - share) * cues
            votes.append(mixed >= 0.5)
        f1 = macro_f1(truth, np.array(votes, dtype=int), 2)
        accuracy = float(np.mean(np.array(guesses) == intents))
        print(f"k={k:2d} share={share:.2f}: {100 * f1:.1f} / {100 * accuracy:.1f}")


if __name__ == "__main__":
    main()

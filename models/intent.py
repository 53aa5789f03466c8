"""Complaint probability and intent from hand-written examples: nearest prototypes in e5 space.

`models/data/intent_examples.jsonl` holds labelled mentions in the seven first-class languages
(complaint or not, and one of INTENTS). A mention is compared with every example by cosine
similarity in the multilingual encoder's space; its k nearest examples vote, weighted by a
softmax of their similarity, for "complaint" and for an intent. Being multilingual, the space
lets a Latvian example help an English mention and the other way round. The examples are
embedded once per process (about 500 texts: a few seconds).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

EXAMPLES = Path(__file__).parent / "data" / "intent_examples.jsonl"
INTENTS = (
    "billing",
    "delivery",
    "outage",
    "login",
    "security",
    "defect",
    "safety",
    "legal",
    "press",
    "question",
    "praise",
    "other",
)
NEIGHBOURS = 5
# Softmax temperature over cosine similarities: e5 similarities sit close together.
TEMPERATURE = 0.02


@dataclass(frozen=True, slots=True)
class IntentResult:
    complaint_probability: float
    intent: str
    # Cosine similarity of the nearest example: low means "nothing like what we have seen".
    similarity: float


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    lang: str
    complaint: bool
    intent: str


def read_examples(path: Path = EXAMPLES) -> list[Example]:
    """The labelled examples; ValueError naming the line of a bad one."""
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            example = Example(
                text=str(row["text"]),
                lang=str(row["lang"]),
                complaint=bool(row["complaint"]),
                intent=str(row["intent"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not an example ({exc})") from exc
        if example.intent not in INTENTS:
            raise ValueError(f"{path}:{number}: unknown intent {example.intent!r}")
        examples.append(example)
    return examples


class IntentModel:
    """k-nearest labelled examples, weighted by similarity."""

    def __init__(
        self,
        encoder: Any,
        examples: list[Example] | None = None,
        *,
        neighbours: int = NEIGHBOURS,
        temperature: float = TEMPERATURE,
    ):
        self.examples = examples if examples is not None else read_examples()
        if not self.examples:
            raise ValueError("no intent examples")
        self.encoder = encoder
        self.neighbours = min(neighbours, len(self.examples))
        self.temperature = temperature
        self._matrix = np.asarray(encoder.embed([e.text for e in self.examples]), np.float32)
        self._complaint = np.array([e.complaint for e in self.examples], dtype=np.float32)
        self._intent = np.array([INTENTS.index(e.intent) for e in self.examples])

    def predict_embeddings(self, embeddings: np.ndarray) -> list[IntentResult]:
        """Complaint probability and intent for rows of unit-length embeddings."""
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.size == 0:
            return []
        similarity = emb @ self._matrix.T
        nearest = np.argsort(-similarity, axis=1)[:, : self.neighbours]
        results = []
        for row, idx in zip(similarity, nearest, strict=True):
            close = row[idx]
            weights = np.exp((close - close.max()) / self.temperature)
            weights /= weights.sum()
            votes = np.zeros(len(INTENTS), dtype=np.float64)
            np.add.at(votes, self._intent[idx], weights)
            results.append(
                IntentResult(
                    complaint_probability=float(weights @ self._complaint[idx]),
                    intent=INTENTS[int(votes.argmax())],
                    similarity=float(close.max()),
                )
            )
        return results

    def predict(self, texts: list[str]) -> list[IntentResult]:
        return self.predict_embeddings(self.encoder.embed(texts)) if texts else []


_models: dict[int, IntentModel] = {}
_lock = threading.Lock()


def get_intent_model(encoder: Any) -> IntentModel:
    """One IntentModel per encoder in this process."""
    with _lock:
        model = _models.get(id(encoder))
        if model is None:
            model = IntentModel(encoder)
            _models[id(encoder)] = model
        return model

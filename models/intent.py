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
NEIGHBOURS = 11
# k, the temperature and the head's L2 penalty were chosen on models/data/intent_validation.jsonl
# (python -m models.tune_intent). L2 None: the neighbours vote on complaints as well.
L2: float | None = 1e-4
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


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Logistic regression of y (0/1) on rows of x with an L2 penalty; (weights, bias)."""
    import torch

    xt, yt = torch.from_numpy(x.astype(np.float64)), torch.from_numpy(y.astype(np.float64))
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> Any:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt)
        loss = loss + l2 * (w @ w)
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), float(b.item())


class IntentModel:
    """Intent from the k nearest labelled examples; complaint from a head fitted on them."""

    def __init__(
        self,
        encoder: Any,
        examples: list[Example] | None = None,
        *,
        neighbours: int = NEIGHBOURS,
        temperature: float = TEMPERATURE,
        l2: float | None = L2,
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
        # Fitted at load from the committed examples (well under a second), so it never goes
        # stale against them; None keeps the neighbours' vote for complaints too.
        both = 0 < self._complaint.sum() < len(self._complaint)
        self._head = fit_logistic(self._matrix, self._complaint, l2) if l2 and both else None

    def predict_embeddings(self, embeddings: np.ndarray) -> list[IntentResult]:
        """Complaint probability and intent for rows of unit-length embeddings."""
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.size == 0:
            return []
        similarity = emb @ self._matrix.T
        head = None
        if self._head is not None:
            w, b = self._head
            head = 1.0 / (1.0 + np.exp(-(emb.astype(np.float64) @ w + b)))
        nearest = np.argsort(-similarity, axis=1)[:, : self.neighbours]
        results = []
        for n, (row, idx) in enumerate(zip(similarity, nearest, strict=True)):
            close = row[idx]
            weights = np.exp((close - close.max()) / self.temperature)
            weights /= weights.sum()
            votes = np.zeros(len(INTENTS), dtype=np.float64)
            np.add.at(votes, self._intent[idx], weights)
            results.append(
                IntentResult(
                    complaint_probability=float(
                        head[n] if head is not None else weights @ self._complaint[idx]
                    ),
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

"""What a mention is about: a multi-label intent head on the encoder's embeddings.

The labels are the taxonomy of models/data/intents/README.md: twenty intents (account takeover,
phishing, fraud, billing, ... praise, feedback, spam) and two modifiers (a vulnerable person,
repeat contact). A mention may carry several. The head reads the embeddings the sentiment head
reads (and earlier layers' from the same pass, when its metadata names them): no second pass.
`models/train_intent.py` trains it on models/data/intents/train and chooses its settings on
models/data/intents/validation; each label has its own threshold, stored with the weights.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.encoder import BUNDLED
from models.labels import INTENTS, LABELS, MODIFIERS
from models.sentiment import WEIGHTS_DIR, check_encoder, head_logits, read_layers

DATA_DIR = Path(__file__).parent / "data" / "intents"
HEAD_FILE = "intent_head.safetensors"
# Beside the labels the head says whether a care lead would rank the mention P1 or P2: how bad
# it is within its intent ("the lid broke, no big deal" against "the dishwasher floods").
URGENT = "urgent"
# And whether it reports a problem at all (any problem intent): the complaint probability.
COMPLAINT = "complaint"
OUTPUTS: tuple[str, ...] = (*LABELS, URGENT, COMPLAINT)
LANGUAGES = ("en", "pl", "lv", "pt", "es", "de", "fr")
SENTIMENTS = ("negative", "neutral", "positive")
PRIORITIES = ("P1", "P2", "P3", "P4")


@dataclass(frozen=True, slots=True)
class Row:
    """One labelled mention of the intent data."""

    text: str
    lang: str
    sector: str
    labels: tuple[str, ...]
    sentiment: str
    priority: str


def read_rows(paths: Iterable[Path]) -> list[Row]:
    """The labelled mentions of the given JSONL files; ValueError naming file and line."""
    rows = []
    for path in paths:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                row = Row(
                    text=str(data["text"]),
                    lang=str(data["lang"]),
                    sector=str(data["sector"]),
                    labels=tuple(dict.fromkeys(str(label) for label in data["labels"])),
                    sentiment=str(data["sentiment"]),
                    priority=str(data["priority"]),
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not a labelled mention ({exc})") from exc
            unknown = [label for label in row.labels if label not in LABELS]
            if unknown or row.sentiment not in SENTIMENTS or row.priority not in PRIORITIES:
                raise ValueError(
                    f"{path}:{number}: unknown label, sentiment or priority "
                    f"({unknown or row.sentiment + ' / ' + row.priority})"
                )
            if not row.text.strip():
                raise ValueError(f"{path}:{number}: empty text")
            rows.append(row)
    return rows


def data_files(split: str) -> list[Path]:
    """The JSONL files of `train` or `validation`, one per language."""
    return sorted((DATA_DIR / split).glob("*.jsonl"))


@dataclass(frozen=True, slots=True)
class IntentResult:
    """Each label's probability and the labels over their thresholds, likeliest first."""

    probabilities: dict[str, float]
    labels: tuple[str, ...]
    # The probability that a care lead would rank it P1 or P2, and whether it passes its threshold.
    urgent_probability: float = 0.0
    urgent: bool = False
    # Whether it passes the bar for a complaint about money or access (low: the guide ranks
    # those P2 anyway) and the bar for any other complaint (high: a late parcel or a broken
    # lid is P3 unless the head is fairly sure it is worse).
    urgent_if_serious: bool = False
    urgent_if_other: bool = False

    # How likely the mention reports a problem (any problem intent), from its own output.
    complaint_probability: float = 0.0

    @property
    def intents(self) -> tuple[str, ...]:
        return tuple(label for label in self.labels if label in INTENTS)

    @property
    def modifiers(self) -> tuple[str, ...]:
        return tuple(label for label in self.labels if label in MODIFIERS)


def layer_features(views: Mapping[int, np.ndarray], layers: Sequence[int]) -> np.ndarray:
    """The head's input: the unit embeddings of `layers` side by side, scaled to unit length."""
    parts = [np.asarray(views[layer], dtype=np.float32) for layer in layers]
    joined = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
    return joined / np.float32(np.sqrt(len(parts)))


class IntentModel:
    """Intents of texts, or of embeddings already made by the same encoder."""

    def __init__(self, encoder: Any, head: str = BUNDLED) -> None:
        path = WEIGHTS_DIR / HEAD_FILE if head == BUNDLED else Path(head)
        self.encoder = encoder
        self._layers, self.meta, digest = read_layers(path)
        if tuple(self.meta.get("labels", ())) != LABELS:
            raise ValueError(f"{path} is not a head for the labels of models/intent.py")
        if self._layers[-1][0].shape[0] != len(OUTPUTS):
            raise ValueError(f"{path} has {self._layers[-1][0].shape[0]} outputs")
        # Which encoder layers the head reads (a head from before reads only the last).
        self.encoder_layers: tuple[int, ...] = tuple(
            int(layer) for layer in self.meta.get("encoder_layers", [encoder.depth])
        )
        check_encoder(self._layers, self.meta, encoder, inputs=len(self.encoder_layers))
        thresholds = self.meta.get("thresholds") or {}
        self.thresholds = np.array([float(thresholds.get(label, 0.5)) for label in OUTPUTS])
        # A head from before the two bars uses the `urgent` threshold for both.
        bars = self.meta.get("urgent_bars") or {}
        urgent = float(self.thresholds[len(LABELS)])
        self.urgent_bars = (float(bars.get("serious", urgent)), float(bars.get("other", urgent)))
        self.version = f"intent@{digest[:12]}"

    def predict_views(self, views: Mapping[int, np.ndarray]) -> list[IntentResult]:
        """The intents of texts from their per-layer embeddings (`Encoder.embed_layers`)."""
        return self.predict_embeddings(layer_features(views, self.encoder_layers))

    def predict_embeddings(self, embeddings: np.ndarray) -> list[IntentResult]:
        """The intents of rows of head inputs (`layer_features`) from this model's encoder."""
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.size == 0:
            return []
        probs = 1.0 / (1.0 + np.exp(-head_logits(self._layers, emb)))
        results = []
        n = len(LABELS)
        for row in probs:
            over = [i for i in np.argsort(-row[:n]) if row[i] >= self.thresholds[i]]
            results.append(
                IntentResult(
                    probabilities={label: float(p) for label, p in zip(LABELS, row, strict=False)},
                    labels=tuple(LABELS[i] for i in over),
                    urgent_probability=float(row[n]),
                    urgent=bool(row[n] >= self.thresholds[n]),
                    urgent_if_serious=bool(row[n] >= self.urgent_bars[0]),
                    urgent_if_other=bool(row[n] >= self.urgent_bars[1]),
                    complaint_probability=float(row[n + 1]),
                )
            )
        return results

    def predict(self, texts: Sequence[str]) -> list[IntentResult]:
        if not texts:
            return []
        return self.predict_views(self.encoder.embed_layers(list(texts), self.encoder_layers))


_models: dict[tuple[int, str], IntentModel] = {}
_lock = threading.Lock()


def head_installed(head: str = BUNDLED) -> bool:
    return (WEIGHTS_DIR / HEAD_FILE).is_file() if head == BUNDLED else Path(head).is_file()


def get_intent_model(encoder: Any, head: str = BUNDLED) -> IntentModel:
    """One IntentModel per encoder and head in this process."""
    with _lock:
        key = (id(encoder), head)
        model = _models.get(key)
        if model is None:
            model = IntentModel(encoder, head)
            _models[key] = model
        return model

"""Three-class sentiment (negative / neutral / positive) from a small head on frozen embeddings."""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.encoder import BUNDLED, Encoder, get_encoder

LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
HEAD_FILE = "sentiment_head.safetensors"
HEAD_META = "sentiment_head.json"


@dataclass(frozen=True)
class SentimentResult:
    """The predicted label and the probability of each of the three labels."""

    label: str
    probabilities: dict[str, float]


def head_logits(layers: Sequence[tuple[np.ndarray, np.ndarray]], emb: np.ndarray) -> np.ndarray:
    """Logits (n, outputs) of the linear layers with exact GELU between them."""
    import torch

    with torch.inference_mode():
        h = torch.from_numpy(np.asarray(emb, dtype=np.float64))
        for i, (w, b) in enumerate(layers):
            h = h @ torch.from_numpy(w.astype(np.float64)).T + torch.from_numpy(
                b.astype(np.float64)
            )
            if i < len(layers) - 1:
                h = torch.nn.functional.gelu(h)
        return h.numpy()


def head_forward(layers: Sequence[tuple[np.ndarray, np.ndarray]], emb: np.ndarray) -> np.ndarray:
    """Class probabilities (n, classes): the softmax of `head_logits`."""
    logits = head_logits(layers, emb)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def read_layers(path: Path) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict[str, Any], str]:
    """A head's `layers.N.weight/bias` tensors, its JSON metadata and the file's sha256."""
    from safetensors.numpy import load_file

    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    tensors = load_file(str(path))
    meta_path = path.with_suffix(".json")
    meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if meta.get("sha256") not in (None, digest):
        raise ValueError(f"{path} does not match the checksum in {meta_path.name}")
    layers = []
    for i in itertools.count():
        key = f"layers.{i}.weight"
        if key not in tensors:
            break
        layers.append((tensors[key], tensors[f"layers.{i}.bias"]))
    if not layers:
        raise ValueError(f"{path} holds no layers.N.weight tensors")
    if meta.get("activation", "gelu") != "gelu":
        raise ValueError(f"{path}: unsupported activation {meta['activation']!r}")
    return layers, meta, digest


def check_encoder(
    layers: Sequence[tuple[np.ndarray, ...]], meta: dict[str, Any], encoder, inputs: int = 1
) -> None:
    """ValueError unless the head reads this encoder's embeddings (size and version); `inputs`
    embeddings of the encoder side by side make one input row."""
    if layers[0][0].shape[1] != encoder.dim * inputs:
        raise ValueError(
            f"head expects {layers[0][0].shape[1]}-dim embeddings, "
            f"encoder {encoder.version} gives {encoder.dim * inputs}"
        )
    trained_on = meta.get("encoder")
    if trained_on and trained_on != encoder.version:
        # A head only makes sense on the embeddings it was trained on; refuse silent misuse.
        raise ValueError(f"head was trained on {trained_on}, not {encoder.version}")


def _load_head(path: Path) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict[str, Any], str]:
    layers, meta, digest = read_layers(path)
    if tuple(meta.get("labels", LABELS)) != LABELS or layers[-1][0].shape[0] != len(LABELS):
        raise ValueError(f"{path} is not a {'/'.join(LABELS)} head")
    return layers, meta, digest


class SentimentModel:
    """Sentiment of texts (or of embeddings already computed with the same encoder)."""

    def __init__(self, encoder: Encoder, head: str = BUNDLED) -> None:
        path = WEIGHTS_DIR / HEAD_FILE if head == BUNDLED else Path(head)
        self.encoder = encoder
        self._layers, self.meta, digest = _load_head(path)
        check_encoder(self._layers, self.meta, encoder)
        head_id = "sentiment" if head == BUNDLED else path.stem
        self.version = f"{encoder.version}+{head_id}@{digest[:12]}"

    def predict(self, texts: Sequence[str]) -> list[SentimentResult]:
        """Embed and classify `texts`, in input order."""
        if len(texts) == 0:
            return []
        return self.predict_embeddings(self.encoder.embed(texts))

    def predict_embeddings(self, embeddings: np.ndarray) -> list[SentimentResult]:
        """Classify rows of `embeddings` made by this model's encoder."""
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.size == 0:
            return []
        if emb.ndim != 2 or emb.shape[1] != self._layers[0][0].shape[1]:
            raise ValueError(f"expected (n, {self._layers[0][0].shape[1]}) embeddings")
        probs = head_forward(self._layers, emb)
        return [
            SentimentResult(
                label=LABELS[int(row.argmax())],
                probabilities={label: float(p) for label, p in zip(LABELS, row, strict=True)},
            )
            for row in probs
        ]


_models: dict[tuple[Any, ...], SentimentModel] = {}
_models_lock = threading.Lock()


def get_sentiment_model(
    encoder_name: str = BUNDLED, head: str = BUNDLED, **encoder_kwargs: Any
) -> SentimentModel:
    """A process-wide shared SentimentModel over the shared encoder."""
    key = (encoder_name, head, tuple(sorted(encoder_kwargs.items())))
    with _models_lock:
        model = _models.get(key)
        if model is None:
            model = SentimentModel(get_encoder(encoder_name, **encoder_kwargs), head)
            _models[key] = model
        return model

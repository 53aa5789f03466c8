"""Fine-tune the encoder with LoRA adapters: `python -m models.train_adapter`.

Low-rank updates on every layer's attention and feed-forward weights, trained jointly with
throw-away linear heads: sentiment on the training splits and, with `--intent-weight` above 0,
the intents (and sentiment) of the hand-written care mentions of models/data/intents/train, so
that one pass of the encoder serves both heads. Chosen on the validation splits and
models/data/intents/validation (never the benchmarks). The result is a small safetensors file
the encoder merges into its weights at load; the shipped heads are then retrained on the adapted
embeddings (models.train_sentiment, models.train_intent).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models.encoder import ADAPTER_FILE, ADAPTER_META, ADAPTER_TARGETS, QUERY_PREFIX
from models.intent import OUTPUTS, data_files, read_rows
from models.labels import LABELS as INTENT_LABELS
from models.metrics import macro_f1
from models.sentiment import LABELS, WEIGHTS_DIR
from models.train_intent import label_matrix
from models.train_sentiment import (
    BRAND_EXAMPLES,
    DEFAULT_SHARED,
    SEED,
    care_split,
    class_balanced,
    concat,
    ltec_split,
    per_language,
    read_jsonl,
)

logger = logging.getLogger("models.train_adapter")


def add_lora(model, rank: int, alpha: float) -> list:
    """Wrap the targeted Linear layers with trainable low-rank updates; freeze everything else."""
    import torch

    class LoRALinear(torch.nn.Module):
        def __init__(self, base: torch.nn.Linear) -> None:
            super().__init__()
            self.base = base
            self.scale = alpha / rank
            self.a = torch.nn.Parameter(torch.empty(rank, base.in_features))
            self.b = torch.nn.Parameter(torch.zeros(base.out_features, rank))
            torch.nn.init.kaiming_uniform_(self.a, a=math.sqrt(5))

        def forward(self, x):
            return self.base(x) + (x @ self.a.T @ self.b.T) * self.scale

    for p in model.parameters():
        p.requires_grad_(False)
    wrapped = []
    for i, layer in enumerate(model.encoder.layer):
        for target in ADAPTER_TARGETS:
            parent_name, _, leaf = target.rpartition(".")
            parent = layer.get_submodule(parent_name)
            lora = LoRALinear(getattr(parent, leaf))
            setattr(parent, leaf, lora)
            wrapped.append((f"encoder.layer.{i}.{target}", lora))
    return wrapped


def adapter_state(wrapped: list) -> dict:
    """The low-rank updates as tensors named for merge_adapter, stored already scaled."""
    state = {}
    for name, m in wrapped:
        state[f"{name}.lora_a"] = m.a.detach().clone().contiguous()
        state[f"{name}.lora_b"] = (m.b.detach() * m.scale).contiguous()
    return state


def intent_targets(rows: int, care_y: np.ndarray, repeat: int) -> np.ndarray:
    """One row of intent targets per training row: the care mentions' labels for the last
    `repeat` blocks (where the care rows sit), NaN (no intent loss) for every other row."""
    out = np.full((rows, care_y.shape[1]), np.nan, dtype=np.float32)
    if repeat:
        out[rows - len(care_y) * repeat :] = np.tile(care_y, (repeat, 1))
    return out


def batches(lengths: np.ndarray, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of rows of similar length (little padding), in random order."""
    order = rng.permutation(len(lengths))
    chunks = [order[a : a + size * 50] for a in range(0, len(order), size * 50)]
    out = []
    for chunk in chunks:
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        out.extend(chunk[a : a + size] for a in range(0, len(chunk), size))
    rng.shuffle(out)  # type: ignore[arg-type]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--alpha", type=float, default=16.0)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--evals", type=int, default=6, help="validation checks over the run")
    parser.add_argument("--limit", type=int, help="train on the first N rows (smoke runs)")
    parser.add_argument(
        "--intent-weight",
        type=float,
        default=0.0,
        help="weight of the care mentions' intent loss (0: sentiment only, as before)",
    )
    parser.add_argument(
        "--care-repeat", type=int, default=2, help="times each care mention is in an epoch"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import torch
    from safetensors.torch import save_file

    from models.encoder import Encoder

    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    training = args.shared / "training"
    umsab = read_jsonl(training / "xlmt-umsab-sentiment/train.jsonl", "umsab-train")
    ltec = read_jsonl(training / "ltec-latvian-sentiment/train.jsonl", "ltec-train")
    brand = read_jsonl(BRAND_EXAMPLES, "brand")
    umsab_val = read_jsonl(training / "xlmt-umsab-sentiment/val.jsonl", "umsab-val")
    # The same stratified 10% LTEC holdout models.train_sentiment tunes on.
    ltec_fit, ltec_val = ltec_split(ltec)
    parts = [umsab, ltec_fit, brand]
    care_rows = read_rows(data_files("train")) if args.intent_weight > 0 else []
    care_y = label_matrix(care_rows)
    if care_rows:
        parts += [care_split("train")] * args.care_repeat
    train = concat("train", parts)
    intent_y = intent_targets(len(train.texts), care_y, args.care_repeat if care_rows else 0)
    if args.limit:
        keep = rng.permutation(len(train.texts))[: args.limit]
        train, intent_y = train.subset(keep, "train"), intent_y[keep]
    vals = [umsab_val, ltec_val]
    care_val = care_split("validation") if care_rows else None
    care_val_y = label_matrix(read_rows(data_files("validation"))) if care_rows else None

    encoder = Encoder(adapter=None, precision="fp32")
    model = encoder._model
    tok = encoder.tokenizer
    wrapped = add_lora(model, args.rank, args.alpha)
    head = torch.nn.Linear(encoder.dim, len(LABELS))
    scale = torch.nn.Parameter(torch.tensor(20.0))  # unit vectors need a temperature
    intent_head = torch.nn.Linear(encoder.dim, len(OUTPUTS))
    positives = np.clip(care_y.sum(0), 1.0, None)
    pos_weight = torch.from_numpy(
        np.sqrt(np.clip((len(care_y) - positives) / positives, 1.0, 10.0)).astype(np.float32)
    )

    def encode(texts: list[str], train_mode: bool):
        enc = tok(
            [QUERY_PREFIX + t for t in texts],
            truncation=True,
            max_length=args.max_length,
            padding=True,
            return_tensors="pt",
        )
        model.train(train_mode)
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return torch.nn.functional.normalize(pooled, p=2, dim=1)

    def embed_all(texts: list[str]):
        order = np.argsort([len(t) for t in texts])
        out = torch.zeros((len(texts), encoder.dim))
        for a in range(0, len(order), 64):
            idx = order[a : a + 64]
            out[idx] = encode([texts[i] for i in idx], False)
        return out

    def evaluate() -> tuple[float, dict[str, float]]:
        parts: dict[str, float] = {}
        with torch.inference_mode():
            for split in vals:
                pred = head(embed_all(split.texts) * scale).argmax(1).numpy()
                if split.name == "umsab-val":
                    parts.update(per_language(split, pred))
                else:
                    parts[split.name] = round(100 * macro_f1(split.labels, pred, len(LABELS)), 1)
            score = float(np.mean(list(parts.values())))
            if care_val is None or care_val_y is None:
                return score, parts
            emb = embed_all(care_val.texts)
            sentiment = per_language(care_val, head(emb * scale).argmax(1).numpy())
            found = torch.sigmoid(intent_head(emb * scale)).numpy() >= 0.5
            truth = care_val_y > 0.5
            f1 = [
                2 * (t & f).sum() / max(1, t.sum() + f.sum())
                for t, f in zip(truth.T[: len(INTENT_LABELS)], found.T, strict=False)
                if t.any()
            ]
            parts["care-sentiment"] = round(float(np.mean(list(sentiment.values()))), 1)
            parts["care-intents"] = round(100 * float(np.mean(f1)), 1)
        # Half the public sentiment splits, half the care mentions (sentiment and intents).
        care = (parts["care-sentiment"] + parts["care-intents"]) / 2
        return (score + care) / 2, parts

    lengths = np.array([len(tok(t)["input_ids"]) for t in train.texts])
    weights = torch.from_numpy(class_balanced(train.labels, train.weights))
    labels = torch.from_numpy(train.labels)
    targets = torch.from_numpy(intent_y)
    params = [p for _, m in wrapped for p in (m.a, m.b)]
    heads = [*head.parameters(), scale, *intent_head.parameters()]
    opt = torch.optim.AdamW(
        [
            {"params": params, "lr": args.lr, "weight_decay": 0.01},
            {"params": heads, "lr": 5 * args.lr, "weight_decay": 0.0},
        ]
    )
    per_epoch = math.ceil(len(train.texts) / args.batch)
    total = max(1, int(args.epochs * per_epoch))
    warmup = max(1, total // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (total - s) / (total - warmup + 1))
    )
    eval_every = max(1, total // args.evals)
    best: tuple[float, dict[str, float], dict[str, torch.Tensor]] | None = None
    step, started, queue = 0, time.monotonic(), []
    while step < total:
        if not queue:
            queue = batches(lengths, args.batch, rng)
        idx = queue.pop()
        pooled = encode([train.texts[i] for i in idx], True) * scale
        loss = torch.nn.functional.cross_entropy(head(pooled), labels[idx], reduction="none")
        loss = (loss * weights[idx]).sum() / weights[idx].sum()
        cared = ~torch.isnan(targets[idx][:, 0])
        if args.intent_weight > 0 and cared.any():
            loss = loss + args.intent_weight * torch.nn.functional.binary_cross_entropy_with_logits(
                intent_head(pooled[cared]), targets[idx][cared], pos_weight=pos_weight
            )
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        if step % 50 == 0:
            rate = step * args.batch / (time.monotonic() - started)
            logger.info("step %d/%d loss %.3f (%.1f texts/s)", step, total, loss.item(), rate)
        if step % eval_every == 0 or step == total:
            score, parts = evaluate()
            logger.info("step %d val %.2f %s", step, score, parts)
            if best is None or score > best[0]:
                best = (score, parts, adapter_state(wrapped))
    assert best is not None
    score, parts, state = best
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ADAPTER_FILE
    save_file(state, str(path), metadata={"format": "pt"})
    meta = {
        "base": encoder.version,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "targets": list(ADAPTER_TARGETS),
        "rank": args.rank,
        "alpha": args.alpha,
        "training": {
            "seed": SEED,
            "epochs": args.epochs,
            "lr": args.lr,
            "batch": args.batch,
            "max_length": args.max_length,
            "rows": len(train.texts),
            "data": "UMSAB train (8 languages), LTEC train minus a 10% holdout, brand examples"
            + (f", care mentions x{args.care_repeat} (sentiment and intents)" if care_rows else ""),
            "intent_weight": args.intent_weight,
        },
        "validation": {"score": round(score, 2), **parts},
    }
    (args.out / ADAPTER_META).write_text(json.dumps(meta, indent=2) + "\n")
    logger.info("wrote %s (val %.2f)", path, score)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

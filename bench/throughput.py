"""Mentions per second and peak memory: a naive transformers pipeline against triage's encoder.

Run by hand on an idle machine (each variant in its own process, so peak memory is its own):

    .venv/bin/python bench/throughput.py --texts 1000

naive: `transformers.pipeline("feature-extraction")` on the same weights (converted e5-small with
the sentiment adapter merged, fp32), one text per call (batch 1), mean pooling, then the head.
ours: models.encoder (bf16 weights where the CPU has bf16 units, batches sorted by length so
padding stays small, torch.inference_mode, torch threads set to the cores) at several batch
sizes, then the head; `--fp32` adds our batching in fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARK = ROOT.parent / "shared" / "benchmarks" / "xlmt-umsab-sentiment" / "test.jsonl"
SAMPLE = ROOT / "triage" / "sample_data" / "mentions.jsonl"


def load_texts(count: int) -> list[str]:
    """`count` texts, every language in turn: the UMSAB test tweets, else the bundled sample."""
    source = BENCHMARK if BENCHMARK.is_file() else SAMPLE
    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line]
    by_lang: dict[str, list[str]] = {}
    for row in rows:
        by_lang.setdefault(str(row.get("lang", "")), []).append(row["text"])
    texts: list[str] = []
    while len(texts) < count:
        for bucket in by_lang.values():
            if bucket:
                texts.append(bucket.pop())
        if not any(by_lang.values()):
            by_lang = {"all": [r["text"] for r in rows]}
    return texts[:count]


def _head():
    """The shipped sentiment head's layers (applied alike in every variant)."""
    from models.sentiment import HEAD_FILE, WEIGHTS_DIR, _load_head

    return _load_head(WEIGHTS_DIR / HEAD_FILE)[0]


def run_naive(texts: list[str]) -> None:
    import numpy as np
    from transformers import pipeline

    from models.encoder import QUERY_PREFIX, Encoder
    from models.sentiment import head_forward

    head = _head()
    # The same weights as ours (the adapter merged), in fp32, through the stock pipeline.
    same = Encoder(precision="fp32")
    extract = pipeline("feature-extraction", model=same._model, tokenizer=same.tokenizer)
    extract(QUERY_PREFIX + texts[0])  # warm-up
    started = time.perf_counter()
    for text in texts:
        hidden = np.asarray(extract(QUERY_PREFIX + text, truncation=True, max_length=128))[0]
        pooled = hidden.mean(axis=0)
        head_forward(head, (pooled / np.linalg.norm(pooled))[None, :].astype(np.float32))
    report("naive pipeline, batch 1", len(texts), time.perf_counter() - started)


def run_ours(texts: list[str], batch_size: int, precision: str) -> None:
    from models.encoder import Encoder
    from models.sentiment import head_forward

    head = _head()
    encoder = Encoder(batch_size=batch_size, precision=precision)
    encoder.embed(texts[:batch_size])  # warm-up
    started = time.perf_counter()
    head_forward(head, encoder.embed(texts))
    name = f"triage, batch {batch_size}, {encoder.precision}"
    report(name, len(texts), time.perf_counter() - started)


def report(name: str, count: int, seconds: float) -> None:
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"variant": name, "per_second": count / seconds, "peak_mb": peak_mb}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--batch-sizes", default="16,32,64")
    parser.add_argument("--fp32", action="store_true", help="also measure fp32 at each batch size")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        texts = load_texts(args.texts)
        if args.variant == "naive":
            run_naive(texts)
        else:
            size, _, precision = args.variant.partition("-")
            run_ours(texts, int(size), precision or "auto")
        return 0
    results = []
    sizes = args.batch_sizes.split(",")
    variants = ["naive", *sizes, *([f"{size}-fp32" for size in sizes] if args.fp32 else [])]
    for variant in variants:
        out = subprocess.run(
            [sys.executable, __file__, "--texts", str(args.texts), "--variant", variant],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    naive = results[0]["per_second"]
    print(f"{args.texts} texts, {os.cpu_count()} cores\n")
    print("| variant | mentions/s | x naive | peak memory (MB) |")
    print("|---|---:|---:|---:|")
    for row in results:
        print(
            f"| {row['variant']} | {row['per_second']:.1f} | {row['per_second'] / naive:.1f} | "
            f"{row['peak_mb']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Writes tiny synthetic e5 model files in the wheel's packed layout, for converter tests."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

QK = 32


def quantize_q4_0(values: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Q4_0-encode rows of `values`; returns the bytes and the values they decode to."""
    blocks = values.astype(np.float32).reshape(-1, QK)
    amax = np.abs(blocks).max(axis=1, keepdims=True)
    scale = (amax / 7.0).astype(np.float16)
    safe = np.where(scale == 0, 1, scale).astype(np.float32)
    q = np.clip(np.rint(blocks / safe) + 8, 0, 15).astype(np.uint8)
    packed = q[:, :16] | (q[:, 16:] << 4)
    raw = np.concatenate([scale.view(np.uint8).reshape(-1, 2), packed], axis=1)
    decoded = (q.astype(np.float32) - 8) * scale.astype(np.float32)
    return raw.tobytes(), decoded.reshape(values.shape)


def write_e5_file(
    path: Path,
    *,
    pieces: list[tuple[str, float]],
    norm_map: dict[int, str],
    hidden: int = 32,
    layers: int = 1,
    heads: int = 2,
    intermediate: int = 64,
    max_positions: int = 16,
    type_vocab: int = 2,
    eps: float = 1e-12,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Write a model file; returns the expected transformers state dict after conversion."""
    rng = np.random.default_rng(seed)
    vocab = len(pieces)
    h, f = hidden, intermediate
    expected: dict[str, np.ndarray] = {}
    tensors: list[tuple[str, int, int, bytes]] = []

    def q4(name: str, hf_name: str, shape: tuple[int, int]) -> None:
        raw, decoded = quantize_q4_0(rng.normal(0, 0.2, shape).astype(np.float32))
        tensors.append((name, 1, shape[0] * shape[1], raw))
        expected[hf_name] = decoded

    def f32(name: str, hf_name: str, shape: tuple[int, ...]) -> None:
        values = rng.normal(0, 0.2, shape).astype(np.float32)
        tensors.append((name, 0, values.size, values.astype("<f4").tobytes()))
        expected[hf_name] = values

    q4("emb.word", "embeddings.word_embeddings.weight", (vocab, h))
    f32("emb.pos", "embeddings.position_embeddings.weight", (max_positions, h))
    f32("emb.type", "embeddings.token_type_embeddings.weight", (type_vocab, h))
    f32("emb.ln.w", "embeddings.LayerNorm.weight", (h,))
    f32("emb.ln.b", "embeddings.LayerNorm.bias", (h,))
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for short, long in (("q", "query"), ("k", "key"), ("v", "value")):
            q4(f"l{i}.{short}.w", f"{p}attention.self.{long}.weight", (h, h))
            f32(f"l{i}.{short}.b", f"{p}attention.self.{long}.bias", (h,))
        q4(f"l{i}.ao.w", f"{p}attention.output.dense.weight", (h, h))
        f32(f"l{i}.ao.b", f"{p}attention.output.dense.bias", (h,))
        f32(f"l{i}.aln.w", f"{p}attention.output.LayerNorm.weight", (h,))
        f32(f"l{i}.aln.b", f"{p}attention.output.LayerNorm.bias", (h,))
        q4(f"l{i}.fi.w", f"{p}intermediate.dense.weight", (f, h))
        f32(f"l{i}.fi.b", f"{p}intermediate.dense.bias", (f,))
        q4(f"l{i}.fo.w", f"{p}output.dense.weight", (h, f))
        f32(f"l{i}.fo.b", f"{p}output.dense.bias", (h,))
        f32(f"l{i}.oln.w", f"{p}output.LayerNorm.weight", (h,))
        f32(f"l{i}.oln.b", f"{p}output.LayerNorm.bias", (h,))

    out = bytearray(b"E5S1")
    out += struct.pack("<I7ifi", 1, h, layers, heads, f, vocab, max_positions, type_vocab, eps, QK)
    blob = b"".join(p.encode() for p, _ in pieces)
    offsets = np.cumsum([0] + [len(p.encode()) for p, _ in pieces]).astype("<u4")
    out += struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, len(blob))
    out += offsets.tobytes() + np.array([s for _, s in pieces], dtype="<f4").tobytes() + blob
    norm = bytearray()
    for cp in sorted(norm_map):
        outs = [ord(c) for c in norm_map[cp]]
        norm += struct.pack(f"<IB{len(outs)}I", cp, len(outs), *outs)
    out += struct.pack("<iI", len(norm_map), len(norm)) + norm
    dir_size = 4 + sum(2 + len(name) + 1 + 4 + 8 + 8 for name, *_ in tensors)
    offset = len(out) + dir_size
    directory = bytearray(struct.pack("<i", len(tensors)))
    for name, dtype, count, raw in tensors:
        directory += struct.pack("<H", len(name)) + name.encode()
        directory += struct.pack("<BIQQ", dtype, count, offset, len(raw))
        offset += len(raw)
    out += directory
    for *_, raw in tensors:
        out += raw
    path.write_bytes(bytes(out))
    return expected

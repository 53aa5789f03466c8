"""The intent data, the bundled head and what it reads from paraphrases in every language."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from models.intent import (
    HEAD_FILE,
    LANGUAGES,
    OUTPUTS,
    IntentModel,
    data_files,
    get_intent_model,
    read_rows,
)
from models.labels import ESCALATING, INTENTS, LABELS, MODIFIERS, PROBLEMS
from models.sentiment import WEIGHTS_DIR

TRAINING_SECTORS = {
    "telecom", "e-commerce", "banking", "travel", "utilities", "food-delivery", "saas", "retail",
    "gaming", "transport",
}  # fmt: skip


def test_a_bad_row_names_its_file_and_line(tmp_path):
    path = tmp_path / "en.jsonl"
    good = (
        '{"text": "ok", "lang": "en", "sector": "retail", "labels": ["praise"], '
        '"sentiment": "positive", "priority": "P4"}'
    )
    bad = good.replace('"praise"', '"weather"')
    path.write_text(good + "\n" + bad + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"en\.jsonl:2: unknown label.*weather"):
        read_rows([path])


def test_the_training_data_covers_every_label_in_every_language():
    rows = read_rows(data_files("train"))
    assert {r.lang for r in rows} == set(LANGUAGES)
    counts = Counter(label for r in rows for label in r.labels)
    assert {label: counts[label] for label in LABELS if counts[label] < 150} == {}
    for lang in LANGUAGES:
        covered = {label for r in rows if r.lang == lang for label in r.labels}
        assert covered == set(LABELS), (lang, set(LABELS) - covered)
    assert {r.sector for r in rows} == TRAINING_SECTORS
    # The care lead's rule the score follows: anything escalating is P1.
    assert [r.text for r in rows if ESCALATING & set(r.labels) and r.priority != "P1"] == []


def test_the_validation_set_is_other_sectors_and_other_texts():
    train = read_rows(data_files("train"))
    validation = read_rows(data_files("validation"))
    assert {r.lang for r in validation} == set(LANGUAGES)
    assert not {r.sector for r in validation} & TRAINING_SECTORS
    seen = {r.text.casefold() for r in train}
    assert [r.text for r in validation if r.text.casefold() in seen] == []


def test_the_taxonomy_is_consistent():
    assert set(MODIFIERS) <= set(LABELS) and set(INTENTS) <= set(LABELS)
    assert set(LABELS) >= ESCALATING and set(INTENTS) >= PROBLEMS
    assert {"question", "praise", "feedback", "spam"}.isdisjoint(PROBLEMS)


@pytest.fixture(scope="module")
def intents(encoder) -> IntentModel:
    return get_intent_model(encoder)


@pytest.mark.model
def test_the_bundled_head_matches_the_taxonomy_and_the_encoder(intents, encoder):
    assert (WEIGHTS_DIR / HEAD_FILE).is_file()
    assert intents.meta["encoder"] == encoder.version
    assert set(intents.meta["thresholds"]) == set(OUTPUTS)
    assert all(0 < t < 1 for t in intents.meta["thresholds"].values())
    assert all(0 <= layer <= encoder.depth for layer in intents.encoder_layers)
    assert intents.meta["input_dim"] == encoder.dim * len(intents.encoder_layers)
    # Money or access problems get the lower bar; the bars were chosen, not left at the default.
    low, high = intents.urgent_bars
    assert 0 <= low < high < 1 and "urgent_bars" in intents.meta


@pytest.mark.model
def test_texts_and_their_layer_embeddings_give_the_same_intents(intents, encoder):
    texts = [
        "Someone changed the e-mail on my account and ordered two phones",
        "Ana from support fixed my router in five minutes, thank you so much!",
    ]
    views = encoder.embed_layers(texts, intents.encoder_layers)
    by_text, by_views = intents.predict(texts), intents.predict_views(views)
    assert [r.labels for r in by_text] == [r.labels for r in by_views]
    assert "account_takeover" in by_text[0].labels and "praise" in by_text[1].labels


@pytest.mark.model
def test_a_head_trained_on_another_encoder_is_refused(tmp_path, encoder):
    import json
    import shutil

    head = tmp_path / HEAD_FILE
    shutil.copy(WEIGHTS_DIR / HEAD_FILE, head)
    meta = json.loads((WEIGHTS_DIR / HEAD_FILE).with_suffix(".json").read_text())
    meta["encoder"] = "some-other-encoder@0"
    head.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="trained on some-other-encoder@0"):
        IntentModel(encoder, str(head))


class _CountingEncoder:
    """Embeds each text as its length in every dimension, and records what it was asked."""

    version = "counting-1"

    def __init__(self) -> None:
        self.asked: list[str] = []

    def embed_layers(self, texts, layers):
        self.asked += texts
        return {layer: np.array([[len(t) + layer] * 3 for t in texts], float) for layer in layers}


def test_training_embeds_only_texts_it_has_not_embedded_before(tmp_path, monkeypatch):
    from models.train_intent import embed_cached

    monkeypatch.setenv("TRIAGE_CACHE_DIR", str(tmp_path))
    encoder = _CountingEncoder()
    first = embed_cached(encoder, ["a", "bbb"], (12, 6))
    assert sorted(encoder.asked) == ["a", "bbb"]
    second = embed_cached(encoder, ["cc", "bbb", "a"], (12, 6))
    assert sorted(encoder.asked) == ["a", "bbb", "cc"]
    assert second[12][:, 0].tolist() == [14, 15, 13]
    assert second[6][1].tolist() == first[6][1].tolist() == [9, 9, 9]


def test_urgent_bars_let_money_problems_through_and_hold_minor_ones_back():
    from models.train_intent import urgent_bars

    n = len(OUTPUTS)
    urgent, billing, defect = (
        OUTPUTS.index("urgent"),
        OUTPUTS.index("billing"),
        OUTPUTS.index("defect"),
    )
    thresholds = np.full(n, 0.5)
    thresholds[urgent] = 0.3

    def row(label: int, p_urgent: float) -> np.ndarray:
        probs = np.zeros(n)
        probs[label], probs[urgent] = 0.9, p_urgent
        return probs

    # Billing errors are urgent even when the head is unsure; defects only when it is sure.
    probs = np.array(
        [row(billing, p) for p in (0.1, 0.2, 0.6)]
        + [row(defect, p) for p in (0.8, 0.9)]
        + [row(defect, p) for p in (0.4, 0.5, 0.6)]
    )
    y = np.zeros((len(probs), n))
    y[:5, urgent] = 1.0
    low, high = urgent_bars(y, probs, thresholds)
    assert low <= 0.1 and 0.6 < high <= 0.8

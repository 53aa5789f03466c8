"""LoRA adapters: what training computes is what the merged encoder computes."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import save_file
from transformers import BertConfig, BertModel

from models.encoder import merge_adapter
from models.train_adapter import adapter_state, add_lora, batches


def _tiny_bert() -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
    )
    return BertModel(config, add_pooling_layer=False).eval()


def test_merged_weights_reproduce_the_trained_adapter(tmp_path):
    base = _tiny_bert()
    trained = copy.deepcopy(base)
    wrapped = add_lora(trained, rank=4, alpha=8.0)
    with torch.no_grad():
        for _, lora in wrapped:
            lora.b.normal_(0, 0.1)  # as if trained: b starts at zero
    ids = torch.randint(0, 50, (3, 7))
    with torch.no_grad():
        want = trained(input_ids=ids).last_hidden_state
        before = base(input_ids=ids).last_hidden_state
    path = tmp_path / "adapter.safetensors"
    save_file(adapter_state(wrapped), str(path))
    digest = merge_adapter(base, path)
    with torch.no_grad():
        got = base(input_ids=ids).last_hidden_state
    assert len(digest) == 64
    assert not torch.allclose(before, want, atol=1e-3)  # the adapter changes the output...
    assert torch.allclose(got, want, atol=1e-5)  # ...and merging reproduces it exactly


def test_only_the_adapters_train():
    model = _tiny_bert()
    wrapped = add_lora(model, rank=2, alpha=4.0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert len(wrapped) == 2 * 6
    assert trainable and all(n.endswith((".a", ".b")) for n in trainable)


def test_an_adapter_for_another_shape_is_refused(tmp_path):
    model = _tiny_bert()
    path = tmp_path / "adapter.safetensors"
    save_file({"encoder.layer.0.attention.self.query.lora_a": torch.zeros(2, 32)}, str(path))
    with pytest.raises(ValueError, match="one low-rank update per targeted layer"):
        merge_adapter(model, path)


def test_batches_cover_every_row_once_grouped_by_length():
    import numpy as np

    lengths = np.array([5, 40, 6, 41, 7, 42, 8, 43])
    out = batches(lengths, 2, np.random.default_rng(1))
    rows = sorted(int(i) for batch in out for i in batch)
    assert rows == list(range(8))
    assert all(np.ptp(lengths[batch]) <= 1 for batch in out)


def test_intent_targets_sit_on_the_care_rows_only():
    import numpy as np

    from models.train_adapter import intent_targets

    care = np.array([[1, 0, 1], [0, 1, 0]], dtype=np.float32)
    out = intent_targets(7, care, repeat=2)
    assert out.shape == (7, 3)
    assert np.isnan(out[:3]).all()  # the sentiment-only rows get no intent loss
    assert (out[3:5] == care).all() and (out[5:] == care).all()
    assert np.isnan(intent_targets(4, care, repeat=0)).all()

"""Pruned models: a model directory that keeps only the base's first N layers loads as the smaller model."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import save_tiny_adapter, save_tiny_model

from llm2vec_search.encoder import Encoder, ModelDirConfig
from llm2vec_search.encoder.encoder import model_fingerprint
from llm2vec_search.encoder.layers import keep_layers
from llm2vec_search.encoder.models import cache_dir
from llm2vec_search.encoder.pooling import pool
from llm2vec_search.encoder.ready import READY_MARKER
from llm2vec_search.encoder.tokens import padded_batch
from llm2vec_search.errors import L2VError

TEXTS = ["the cat sat on the mat", "stock markets fell sharply and then rose again", "proteins fold"]


def _pruned_dir(tmp_path, layers: int | None):
    """A trained directory (one adapter over the tiny 2-layer base) that keeps `layers` layers."""
    base = save_tiny_model(tmp_path / "base")
    model_dir = tmp_path / f"trained-{layers}"
    save_tiny_adapter(base, model_dir / "mntp", seed=1)
    ModelDirConfig(base_model=str(base), adapters=["mntp"], layers=layers).save(model_dir)
    return model_dir


@torch.no_grad()
def _vectors_after_layer(encoder: Encoder, texts: list[str], count: int) -> np.ndarray:
    """The full model's vectors taken after its first `count` layers (final norm applied), mean pooled."""
    items = encoder.tokenize(texts)
    ids, attention, pool_mask = (
        torch.from_numpy(a) for a in padded_batch(items, encoder.tokenizer.pad_token_id)
    )
    states = encoder.model(input_ids=ids, attention_mask=attention, output_hidden_states=True).hidden_states
    pooled = pool(encoder.model.norm(states[count]), pool_mask, "mean")
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def test_a_pruned_model_runs_only_its_first_layers(tmp_path):
    full = Encoder.from_pretrained(_pruned_dir(tmp_path, None), device="cpu")
    pruned_dir = _pruned_dir(tmp_path, 1)
    pruned = Encoder.from_pretrained(pruned_dir, device="cpu")
    assert len(pruned.model.layers) == pruned.model.config.num_hidden_layers == 1
    vectors = pruned.encode(TEXTS)
    assert np.allclose(vectors, _vectors_after_layer(full, TEXTS, 1), atol=1e-5)
    assert not np.allclose(vectors, full.encode(TEXTS), atol=1e-3)
    # Vectors differ, so fingerprints do (an index of one is not searched with the other); `doctor`'s
    # fingerprint, computed without loading, agrees.
    assert pruned.fingerprint != full.fingerprint
    assert model_fingerprint(pruned_dir) == pruned.fingerprint


def test_a_pruned_model_is_saved_pruned_in_its_ready_entry(tmp_path):
    model_dir = _pruned_dir(tmp_path, 1)
    first = Encoder.from_pretrained(model_dir, device="cpu").encode(TEXTS)
    [entry] = [path for path in cache_dir().glob("ready-*") if (path / READY_MARKER).is_file()]
    assert json.loads((entry / "config.json").read_text())["num_hidden_layers"] == 1
    again = Encoder.from_pretrained(model_dir, device="cpu")
    assert len(again.model.layers) == 1
    assert np.allclose(again.encode(TEXTS), first, atol=1e-6)


def test_an_adapter_trained_on_the_pruned_model_loads_onto_it_exactly(tmp_path):
    """A stage trained on a pruned start (`train ... --keep-layers`, or on top of a pruned model) has LoRA
    weights for the kept layers only: it loads without PEFT's missing-keys warning, onto the full-depth
    adapters below it, to exactly the weights training ended with."""
    model_dir, base = _pruned_dir(tmp_path, 1), tmp_path / "base"
    start = Encoder.from_pretrained(model_dir, device="cpu").model  # mntp merged, one layer
    expected = save_tiny_adapter(base, model_dir / "top", seed=2, merge_first=start)
    ModelDirConfig(base_model=str(base), adapters=["mntp", "top"], layers=1).save(model_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = Encoder.from_pretrained(model_dir, device="cpu").model
    assert not [w for w in caught if "missing adapter keys" in str(w.message)]
    weights = loaded.state_dict()
    for name, tensor in expected.state_dict().items():
        torch.testing.assert_close(weights[name], tensor, atol=1e-6, rtol=0)


def test_keeping_more_layers_than_the_model_has_is_a_clear_error(tmp_path):
    model_dir = _pruned_dir(tmp_path, 3)
    with pytest.raises(L2VError, match=r"layers must be in \[1, 2\]"):
        Encoder.from_pretrained(model_dir, device="cpu")
    with pytest.raises(L2VError, match=r"has no \.layers"):
        keep_layers(torch.nn.Linear(2, 2), 1)


def test_ship_default_copies_a_model_pruned(tmp_path):
    """`scripts/ship_default.py MODEL --layers N` writes a pruned copy without training it."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "ship_default.py"
    full_dir = _pruned_dir(tmp_path, None)
    shipped = tmp_path / "shipped"
    command = [sys.executable, script, full_dir, "--layers", "1", "--to", shipped]
    subprocess.run(command, check=True, capture_output=True)
    assert json.loads((shipped / "l2v-model.json").read_text())["layers"] == 1
    expected = Encoder.from_pretrained(_pruned_dir(tmp_path, 1), device="cpu").encode(TEXTS)
    vectors = Encoder.from_pretrained(shipped, device="cpu").encode(TEXTS)
    np.testing.assert_allclose(vectors, expected, atol=1e-3)  # adapters shipped in fp16

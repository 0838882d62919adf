"""LoRA adapters applied in order, and trained model directories that `from_pretrained` accepts."""

import json

import numpy as np
import pytest
from conftest import save_tiny_adapter, save_tiny_model

from llm2vec_search import L2VError
from llm2vec_search.encoder import Encoder, ModelDirConfig, set_bidirectional
from llm2vec_search.encoder.encoder import model_fingerprint

# Loading adapters must not print library deprecation noise to our users.
pytestmark = pytest.mark.filterwarnings("error::FutureWarning")

TEXTS = ["the cat sat on the mat", "stock markets fell sharply"]


def _reference(merged, tokenizer_dir) -> np.ndarray:
    from transformers import AutoTokenizer

    set_bidirectional(merged, True)
    return Encoder(merged, AutoTokenizer.from_pretrained(tokenizer_dir)).encode(TEXTS)


def test_adapters_are_merged_in_order(tmp_path):
    base = save_tiny_model(tmp_path / "base")
    first = save_tiny_adapter(base, tmp_path / "mntp", seed=1)
    both = save_tiny_adapter(base, tmp_path / "simcse", seed=2, merge_first=first)
    expected = _reference(both, base)

    encoder = Encoder.from_pretrained(base, adapters=[tmp_path / "mntp", tmp_path / "simcse"], device="cpu")
    np.testing.assert_allclose(encoder.encode(TEXTS), expected, atol=1e-5)
    plain = Encoder.from_pretrained(base, device="cpu")
    assert not np.allclose(plain.encode(TEXTS), expected, atol=1e-3)
    assert plain.fingerprint != encoder.fingerprint
    assert model_fingerprint(base) == plain.fingerprint  # computed without loading anything


def test_model_directory_carries_its_settings(tmp_path):
    base = save_tiny_model(tmp_path / "base")
    model_dir = tmp_path / "trained"
    merged = save_tiny_adapter(base, model_dir / "mntp", seed=1)
    ModelDirConfig(
        base_model=str(base),
        adapters=["mntp"],
        pooling="weighted_mean",
        max_length=64,
        query_instruction="Find it",
    ).save(model_dir)

    encoder = Encoder.from_pretrained(model_dir, device="cpu")
    assert model_fingerprint(model_dir) == encoder.fingerprint
    assert (encoder.pooling, encoder.max_length, encoder.query_instruction) == (
        "weighted_mean",
        64,
        "Find it",
    )
    from transformers import AutoTokenizer

    set_bidirectional(merged, True)
    reference = Encoder(merged, AutoTokenizer.from_pretrained(base), pooling="weighted_mean")
    np.testing.assert_allclose(encoder.encode(TEXTS), reference.encode(TEXTS), atol=1e-5)
    # Explicit arguments override the directory's settings.
    assert Encoder.from_pretrained(model_dir, pooling="mean", device="cpu").pooling == "mean"


def test_relative_base_model_path_is_resolved_against_the_model_dir(tmp_path):
    save_tiny_model(tmp_path / "trained" / "base")
    ModelDirConfig(base_model="base").save(tmp_path / "trained")
    assert Encoder.from_pretrained(tmp_path / "trained", device="cpu").dim == 32


def test_broken_model_config_is_a_clear_error(tmp_path):
    (tmp_path / "l2v-model.json").write_text("{not json")
    with pytest.raises(L2VError, match="cannot read model config"):
        Encoder.from_pretrained(tmp_path)


def test_newer_model_format_is_refused(tmp_path):
    (tmp_path / "l2v-model.json").write_text(json.dumps({"base_model": "x", "format": 99}))
    with pytest.raises(L2VError, match="upgrade"):
        Encoder.from_pretrained(tmp_path)


def test_missing_adapter_is_a_clear_error(tmp_path):
    base = save_tiny_model(tmp_path / "base")
    (tmp_path / "empty").mkdir()
    with pytest.raises(L2VError, match="not a PEFT adapter directory"):
        Encoder.from_pretrained(base, adapters=[tmp_path / "empty"])

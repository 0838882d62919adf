"""Bidirectional attention for every supported family, checked the way `check_attention` documents."""

import pytest
from conftest import FAMILIES, save_tiny_model, tiny_model

from llm2vec_search.encoder import Encoder, check_attention, set_bidirectional


@pytest.mark.parametrize("family", FAMILIES)
def test_loaded_model_is_bidirectional_and_padding_invariant(family, tmp_path):
    encoder = Encoder.from_pretrained(save_tiny_model(tmp_path, family), device="cpu")
    check = check_attention(encoder.model)
    assert check.sees_future, check
    assert check.padding_invariant, check


@pytest.mark.parametrize("family", FAMILIES)
def test_causal_option_keeps_the_model_causal(family, tmp_path):
    encoder = Encoder.from_pretrained(save_tiny_model(tmp_path, family), device="cpu", bidirectional=False)
    check = check_attention(encoder.model)
    assert not check.sees_future, check
    assert check.padding_invariant, check


def test_switching_back_and_forth():
    model, _ = tiny_model("llama")
    set_bidirectional(model, True)
    assert check_attention(model).bidirectional
    set_bidirectional(model, False)
    assert not check_attention(model).sees_future


def test_module_flags_alone_leave_padded_batches_causal():
    """Why `set_bidirectional` touches the config too: padded batches get their mask from it."""
    model, _ = tiny_model("qwen2")
    for module in model.modules():
        if hasattr(module, "is_causal") and module is not model:
            module.is_causal = False
    check = check_attention(model)
    assert check.sees_future
    assert not check.padding_invariant

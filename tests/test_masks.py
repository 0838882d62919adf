"""Attention masks built directly (not through transformers' vmapped mask functions) give the same states."""

import pytest
import torch
from conftest import FAMILIES, tiny_model

from llm2vec_search.encoder import set_bidirectional
from llm2vec_search.encoder.bidirectional import attention_masks


def _model(family: str, implementation: str, bidirectional: bool = True):
    model, _ = tiny_model(family)
    model.config._attn_implementation = implementation
    set_bidirectional(model, bidirectional)
    return model


def _padded_batch():
    """Rows of 20, 12 and 5 real tokens (right-padded), longer than the tiny models' sliding window of 8."""
    ids = torch.randint(5, 200, (3, 20), generator=torch.Generator().manual_seed(0))
    attention = torch.ones_like(ids)
    attention[1, 12:] = 0
    attention[2, 5:] = 0
    return ids, attention


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("family", FAMILIES)
@torch.inference_mode()
def test_direct_masks_give_transformers_states(family, implementation):
    if family == "gemma2" and implementation == "sdpa":
        pytest.skip("transformers runs Gemma 2 (attention softcapping) only with eager attention")
    model = _model(family, implementation)
    ids, attention = _padded_batch()
    expected = model(input_ids=ids, attention_mask=attention).last_hidden_state
    got = model(input_ids=ids, attention_mask=attention_masks(model, attention)).last_hidden_state
    real = attention.bool()
    torch.testing.assert_close(got[real], expected[real], rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", ["gemma3_text", "qwen3", "llama"])
def test_an_unpadded_query_within_the_window_gets_no_mask(family):
    """A one-shot query is one row without padding: nothing to mask, so no mask is built at all."""
    model = _model(family, "sdpa")
    masks = attention_masks(model, torch.ones(1, 8, dtype=torch.long))
    assert masks is None or set(masks.values()) == {None}


def test_causal_models_keep_transformers_masks():
    model = _model("gemma3_text", "sdpa", bidirectional=False)
    _, attention = _padded_batch()
    assert attention_masks(model, attention) is attention

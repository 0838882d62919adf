"""Which dtype a model runs in: GPUs never run Gemma in float16 (its activations overflow it); CPUs: fp32."""

import numpy as np
import pytest
import torch
from conftest import real_model_cache

from llm2vec_search import L2VError
from llm2vec_search.encoder import Encoder
from llm2vec_search.encoder.device import FP16_OVERFLOW_FAMILIES, choose_dtype
from tests.conftest import run_cli

FP16_MAX = torch.finfo(torch.float16).max


@pytest.mark.parametrize(
    ("device", "dtype", "family", "bf16_supported", "expected"),
    [
        ("cpu", "auto", "gemma3_text", False, torch.float32),
        ("cpu", "auto", "llama", False, torch.float32),
        ("cuda", "auto", "gemma3_text", True, torch.bfloat16),
        ("cuda", "auto", "llama", True, torch.bfloat16),
        ("cuda", "auto", "gemma3_text", False, torch.float32),  # no bf16: fp32 rather than overflow
        ("cuda", "auto", "gemma2", False, torch.float32),
        ("cuda", "auto", "llama", False, torch.float16),
        ("cuda", "float16", "llama", True, torch.float16),
        ("cuda", "bf16", "gemma3_text", True, torch.bfloat16),
        ("cpu", "float32", "gemma3_text", False, torch.float32),
    ],
)
def test_auto_dtype_never_picks_float16_for_families_that_overflow_it(
    device, dtype, family, bf16_supported, expected
):
    assert choose_dtype(device, dtype, family, bf16_supported) == expected


@pytest.mark.parametrize("family", FP16_OVERFLOW_FAMILIES)
def test_explicit_float16_on_gemma_is_refused_naming_bfloat16(family):
    with pytest.raises(L2VError, match=r"exceed float16's range.*--dtype bfloat16"):
        choose_dtype("cuda", "float16", family, True)


def test_unknown_dtype_is_a_clear_error():
    with pytest.raises(L2VError, match="unknown dtype 'int4'"):
        choose_dtype("cpu", "int4", "llama", False)


def test_bfloat16_on_cpu_gives_the_fp32_vectors(tiny_model_dir):
    texts = ["the cat sat on the mat", "stock markets fell sharply"]
    fp32 = Encoder.from_pretrained(tiny_model_dir, device="cpu").encode(texts)
    bf16 = Encoder.from_pretrained(tiny_model_dir, device="cpu", dtype="bfloat16").encode(texts)
    assert np.isfinite(bf16).all()
    assert (np.sum(fp32 * bf16, axis=1) > 0.99).all()


def test_cli_refuses_float16_for_gemma_in_one_line(tiny_model_dir):
    command = ["embed", "a", "--model", str(tiny_model_dir), "--device", "cpu", "--dtype", "float16"]
    result = run_cli(*command, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "bfloat16" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_the_default_models_activations_exceed_float16(monkeypatch):
    """The measurement behind FP16_OVERFLOW_FAMILIES, on the shipped default: hidden states pass 65,504."""
    monkeypatch.setenv("L2V_SEARCH_CACHE_DIR", str(real_model_cache()))
    encoder = Encoder.from_pretrained("default", device="cpu")
    assert encoder.model.config.model_type in FP16_OVERFLOW_FAMILIES
    largest = []
    hooks = [
        layer.register_forward_hook(lambda _m, _i, out: largest.append(out[0].abs().max().item()))
        for layer in encoder.model.layers
    ]
    try:
        encoder.encode(["The cat sat on the mat while the stock market fell sharply in the afternoon."])
    finally:
        for hook in hooks:
            hook.remove()
    assert max(largest) > FP16_MAX

"""Where a model runs and in which dtype: one decision for every command, and the float16 guard for Gemma."""

import torch

from ..errors import L2VError

# Families whose activations leave float16's range (max 65,504): Gemma 3 270M's hidden states reach ~1.07e5
# on ordinary sentences (tests/test_precision.py measures it on the shipped default), and Gemma 1/2 share the
# architecture's scaling. float16 turns those into inf/NaN; bfloat16 has float32's range.
FP16_OVERFLOW_FAMILIES = ("gemma", "gemma2", "gemma3_text")
DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def choose_dtype(device_type: str, dtype: str, family: str | None, bf16_supported: bool) -> torch.dtype:
    """The dtype to run a model of `family` in. `auto`: fp32 on CPU (bf16 is slower there); on a GPU bf16
    where it is supported, else fp16 unless the family overflows it, then fp32. An explicit float16 for a
    family that overflows it is refused."""
    if dtype == "auto":
        if device_type != "cuda":
            return torch.float32
        if bf16_supported:
            return torch.bfloat16
        return torch.float32 if family in FP16_OVERFLOW_FAMILIES else torch.float16
    if dtype not in DTYPES:
        raise L2VError(f"unknown dtype {dtype!r}; choose auto, float32, float16 or bfloat16")
    if DTYPES[dtype] == torch.float16 and family in FP16_OVERFLOW_FAMILIES:
        raise L2VError(
            f"{family} activations exceed float16's range (up to ~1e5 > 65,504) and would turn into "
            "inf/NaN; use --dtype bfloat16 (or float32)"
        )
    return DTYPES[dtype]


def pick_device(
    device: str = "auto", dtype: str = "auto", family: str | None = None
) -> tuple[torch.device, torch.dtype]:
    """`auto`: CUDA when a GPU is present, else CPU; the dtype as `choose_dtype` decides for `family`."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch_device = torch.device(device)
    except RuntimeError as exc:
        raise L2VError(f"unknown device {device!r}: {exc}") from exc
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise L2VError("device 'cuda' asked for, but no CUDA GPU is available")
    bf16 = torch_device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch_device, choose_dtype(torch_device.type, dtype, family, bf16)

"""Turn per-token hidden states into one vector per text.

Every mode reads a `pool_mask` (1 at the positions that may be pooled) rather than the attention mask, so
that instruction tokens and special tokens are attended to but never pooled (LLM2Vec's embed mask), and so
that left and right padding give the same answer.
"""

from typing import Literal

import torch

PoolingMode = Literal["mean", "weighted_mean", "last_token", "bos"]
POOLING_MODES: tuple[str, ...] = ("mean", "weighted_mean", "last_token", "bos")


def pool(hidden: torch.Tensor, pool_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool `hidden` (batch, seq, dim) over the positions where `pool_mask` (batch, seq) is 1.

    - mean: average of the pooled positions.
    - weighted_mean: position-weighted average (weights 1..n over the pooled positions, so later tokens
      count more, as in SGPT), which suits models whose later tokens have seen more of the text.
    - last_token / bos: the single marked position (the encoder marks the appended EOS or the BOS token).
    """
    mask = pool_mask.to(hidden.dtype).unsqueeze(-1)
    if mode == "mean":
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    if mode == "weighted_mean":
        weights = pool_mask.cumsum(1).to(hidden.dtype) * pool_mask.to(hidden.dtype)
        weights = weights.unsqueeze(-1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    if mode in ("last_token", "bos"):
        # The encoder marks exactly one position per row for these modes.
        index = pool_mask.long().argmax(1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]
    raise ValueError(f"unknown pooling {mode!r}; choose one of {', '.join(POOLING_MODES)}")

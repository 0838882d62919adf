"""Switch a decoder's self-attention between causal and bidirectional, and prove which one it uses.

transformers 5 builds the attention mask from `config.is_causal`: with it False, every family's mask helpers
return a bidirectional (padding-only) mask. Switching only the attention modules' `is_causal` flags is not
enough (padded batches still get a causal mask from the config); we switch the config and, so that no kernel
path that reads a module's own flag (SDPA or flash attention without a mask) can fall back to causal, the
modules too.
"""

import functools
from dataclasses import dataclass

import torch
from torch import nn


def set_bidirectional(model: nn.Module, bidirectional: bool = True) -> None:
    """Make every attention layer of `model` attend in both directions (or restore causal attention)."""
    config = model.config
    config.is_causal = not bidirectional
    if hasattr(config, "use_bidirectional_attention"):
        # Gemma 2/3 read this flag too (Gemma 3 widens the sliding window to both sides with it).
        config.use_bidirectional_attention = bidirectional
    for module in model.modules():
        if hasattr(module, "is_causal") and module is not model:
            module.is_causal = not bidirectional


@dataclass
class AttentionCheck:
    """What `check_attention` measured; `bidirectional` is the verdict."""

    # All three are relative to the largest |value| of the text's states, so one tolerance fits every model.
    first_token_change: float  # max |Δ| of token 0's state when only the last token changes
    left_padding_error: float  # max |Δ| between a text alone and the same text in a left-padded batch
    right_padding_error: float  # same for a right-padded batch
    tolerance: float

    @property
    def sees_future(self) -> bool:
        return self.first_token_change > self.tolerance

    @property
    def padding_invariant(self) -> bool:
        return max(self.left_padding_error, self.right_padding_error) <= self.tolerance

    @property
    def bidirectional(self) -> bool:
        return self.sees_future and self.padding_invariant


@torch.inference_mode()
def check_attention(
    model: nn.Module, vocab_size: int | None = None, tolerance: float = 1e-4
) -> AttentionCheck:
    """Measure, on random token ids, whether `model` looks ahead and whether padding leaks into the states.

    Token 0's hidden state must change when only the last token changes (it can see the future), and a text
    run alone must match the same text inside a left- and a right-padded batch (padding masked out in both).
    Errors are relative to the states' largest magnitude; run it in fp32 (the tolerance is for fp32 math).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    vocab = vocab_size or model.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(10, vocab, (1, 12), generator=generator)
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % vocab or 10

    def states(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device))
        return out.last_hidden_state.float().cpu()

    ones = torch.ones_like(ids)
    alone = states(ids, ones)[0]
    scale = alone.abs().max().item() or 1.0
    first_token_change = (alone[0] - states(changed, ones)[0][0]).abs().max().item() / scale

    longer = torch.randint(10, vocab, (1, 20), generator=generator)
    pad = 20 - ids.shape[1]
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    padding = torch.full((1, pad), pad_id)
    right = torch.cat([torch.cat([ids, padding], 1), longer])
    right_mask = torch.cat(
        [torch.cat([ones, torch.zeros(1, pad, dtype=ones.dtype)], 1), torch.ones(1, 20)]
    ).long()
    left = torch.cat([torch.cat([padding, ids], 1), longer])
    left_mask = torch.cat(
        [torch.cat([torch.zeros(1, pad, dtype=ones.dtype), ones], 1), torch.ones(1, 20)]
    ).long()
    right_error = (states(right, right_mask)[0, : ids.shape[1]] - alone).abs().max().item() / scale
    left_error = (states(left, left_mask)[0, pad:] - alone).abs().max().item() / scale
    model.train(was_training)
    return AttentionCheck(first_token_change, left_error, right_error, tolerance)


MASK_IMPLEMENTATIONS = ("sdpa", "eager")


def attention_masks(model: nn.Module, attention: torch.Tensor) -> torch.Tensor | dict | None:
    """What to pass a bidirectional `model` as `attention_mask` for a right-padded batch (`attention`: 1 at
    real tokens): each layer kind's 4D mask, built directly.

    transformers builds these masks per call through vmapped mask functions, about 9 ms of a 25-token query on
    two cores (issue 23). Without padding every position sees every other (within a sliding window), so a
    query gets no mask at all. Causal models, attention kernels other than SDPA and eager, and models that
    take one mask but have a sliding window keep transformers' own path (`attention` as it is).
    """
    config = model.config
    implementation = getattr(config, "_attn_implementation", None)
    if getattr(config, "is_causal", True) or implementation not in MASK_IMPLEMENTATIONS:
        return attention
    layer_types = getattr(config, "layer_types", None)
    if not layer_types and getattr(config, "sliding_window", None) is not None:
        return attention
    padded = not bool(attention.all())
    width = attention.shape[1]

    def mask(layer_type: str) -> torch.Tensor | None:
        window = config.sliding_window if layer_type == "sliding_attention" else None
        reach = window is not None and width - 1 > window  # some pairs lie beyond the window
        if not padded and not reach:
            return None
        allowed = attention.bool()[:, None, None, :]  # (batch, 1, query, key): keys that are real tokens
        if reach:
            allowed = allowed & _window(width, window, attention.device)
        if implementation == "sdpa":
            return allowed
        dtype = next(model.parameters()).dtype
        return torch.zeros(allowed.shape, dtype=dtype, device=attention.device).masked_fill(
            ~allowed, torch.finfo(dtype).min
        )

    if not layer_types:
        return mask("full_attention")
    return {layer_type: mask(layer_type) for layer_type in set(layer_types)}


@functools.lru_cache(maxsize=64)
def _window(width: int, window: int, device: torch.device) -> torch.Tensor:
    """Pairs of positions at most `window` apart, as transformers' bidirectional sliding window counts."""
    positions = torch.arange(width, device=device)
    return (positions[:, None] - positions[None, :]).abs() <= window

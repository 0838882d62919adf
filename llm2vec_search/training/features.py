"""What distillation trains on: the frozen lower layers' output per text, computed once and cached, and the
trained top of the student that runs from it (top layers, pooling, head)."""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..encoder.adapters import load_head, save_head
from ..encoder.encoder import Tokenized
from ..encoder.models import cache_dir
from ..encoder.pooling import pool

HEAD_FILE = "head.safetensors"
FEATURE_BATCH_TOKENS = 4096  # padded tokens per forward pass while caching the frozen layers' output


def texts_key(*parts: object) -> str:
    """A short hash of `parts` (texts, fingerprints, settings) that names a cache file."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(repr(part).encode() + b"\0")
    return digest.hexdigest()[:16]


@dataclass
class Features:
    """Per text: the frozen layers' output (tokens, hidden) in fp32 and the positions to pool."""

    states: list[torch.Tensor]
    pool_positions: list[list[int]]


@torch.inference_mode()
def frozen_features(
    bottom: nn.Module, items: Sequence[Tokenized], pad_id: int, device: torch.device, progress=None
) -> Features:
    """Run the frozen layers once over every text, longest first in token-budget batches."""
    order = sorted(range(len(items)), key=lambda i: -len(items[i].ids))
    states: list[torch.Tensor | None] = [None] * len(items)
    done = 0
    while done < len(order):
        width = len(items[order[done]].ids)
        batch = order[done : done + max(1, FEATURE_BATCH_TOKENS // width)]
        input_ids, attention = _pad([items[i].ids for i in batch], width, pad_id)
        hidden = bottom(
            input_ids=input_ids.to(device), attention_mask=attention.to(device), use_cache=False
        ).last_hidden_state
        for row, index in enumerate(batch):
            states[index] = hidden[row, : len(items[index].ids)].float().cpu().clone()
        done += len(batch)
        if progress:
            progress(done, len(order))
    return Features([s for s in states if s is not None], [item.pool_positions for item in items])


def cached_features(
    bottom: nn.Module, items: Sequence[Tokenized], pad_id: int, device: torch.device, key: str, progress=None
) -> Features:
    """`frozen_features`, kept in the model cache under `key` (a resumed run does not pay them again)."""
    path = cache_dir() / "distill" / f"features-{key}.pt"
    if path.is_file():
        saved = torch.load(path, weights_only=True)
        return Features(saved["states"], saved["pool_positions"])
    features = frozen_features(bottom, items, pad_id, device, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".tmp")
    torch.save({"states": features.states, "pool_positions": features.pool_positions}, staging)
    staging.replace(path)
    return features


def _pad(rows: Sequence[Sequence[int]], width: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, values in enumerate(rows):
        ids[row, : len(values)] = torch.tensor(values)
        mask[row, : len(values)] = 1
    return ids, mask


class TopLayers(nn.Module):
    """The trained part of the student: the top layers (LoRA) from cached features, mean pooling, the head.

    `save_pretrained` writes the LoRA adapter and the head into one directory, so a checkpoint ships as is.
    """

    def __init__(self, peft_model: nn.Module, top: nn.Module, head: nn.Module, pooling: str) -> None:
        super().__init__()
        self.peft_model = peft_model
        self.top = top
        self.head = head
        self.pooling = pooling

    def forward(self, features: Features, indices: Sequence[int], device: torch.device) -> torch.Tensor:
        """Unnormalized head outputs for the texts at `indices`."""
        states = [features.states[i] for i in indices]
        width = max(len(s) for s in states)
        batch = torch.zeros((len(states), width, states[0].shape[-1]))
        attention = torch.zeros((len(states), width), dtype=torch.long)
        pool_mask = torch.zeros((len(states), width), dtype=torch.long)
        for row, (state, index) in enumerate(zip(states, indices, strict=True)):
            batch[row, : len(state)] = state
            attention[row, : len(state)] = 1
            pool_mask[row, features.pool_positions[index]] = 1
        hidden = self.top(
            inputs_embeds=batch.to(device), attention_mask=attention.to(device), use_cache=False
        ).last_hidden_state
        return self.head(pool(hidden.float(), pool_mask.to(device), self.pooling))

    def save_pretrained(self, directory: Path | str) -> None:
        self.peft_model.save_pretrained(directory)
        save_head(self.head, Path(directory) / HEAD_FILE)

    def load_adapter_state(self, directory: Path) -> None:
        """Restore what `save_pretrained` wrote (a resumed run)."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(self.peft_model, load_file(directory / "adapter_model.safetensors"))
        self.head.load_state_dict(load_head(directory / HEAD_FILE).state_dict())

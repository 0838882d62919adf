"""Stage 3 (optional), supervised contrastive training on (query, positive, hard negative) pairs.

Queries get the query instruction (attended to, not pooled, as at search time); passages do not. Each
query's candidates are every positive in the batch plus every hard negative, so a batch of n pairs with
negatives gives each query 2n-1 negatives.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Unpack

import torch

from .contrastive import ContrastiveSettings, contrastive_backward, step_mini_batch, training_encoder
from .data import Pair, PairSource, mixed_batches
from .loop import StageOptions, run_stage
from .losses import info_nce
from .setup import StartingPoint, free_adapter_name

DEFAULT_QUERY_INSTRUCTION = "Given a query, retrieve relevant passages"


@dataclass
class SupervisedSettings(ContrastiveSettings):
    """LLM2Vec's supervised recipe, scaled to one machine: 1000 steps of 64 pairs at 2e-4, no dropout."""

    batch_size: int = 64
    lr: float = 2e-4
    query_instruction: str = DEFAULT_QUERY_INSTRUCTION


class SupervisedStage:
    def __init__(
        self,
        start: StartingPoint,
        sources: Sequence[PairSource],
        settings: SupervisedSettings,
        name: str = "supervised",
    ) -> None:
        self.name = name
        self.encoder, self.model, self.device = training_encoder(start, settings, settings.query_instruction)
        self.sources = sources
        self.settings = settings
        # Planned for the largest step: every pair with a hard negative.
        self.mini_batch = step_mini_batch(self.encoder, settings, 3 * settings.batch_size, self.device)

    def micro_batches(self) -> Iterator[tuple[PairSource, list[Pair]]]:
        return mixed_batches(self.sources, self.settings.batch_size, self.settings.seed)

    def backward(
        self, batch: tuple[PairSource, list[Pair]], scale_loss: Callable[[torch.Tensor], torch.Tensor]
    ) -> float:
        encoder = self.encoder
        source, batch = batch
        instruction = encoder.query_instruction if source.instruction is None else source.instruction
        queries = encoder.tokenize([pair.query for pair in batch], instruction)
        passages = encoder.tokenize(
            [pair.positive for pair in batch] + [pair.negative for pair in batch if pair.negative]
        )
        count = len(queries)
        return contrastive_backward(
            encoder.forward,
            queries + passages,
            lambda vectors: info_nce(vectors[:count], vectors[count:], self.settings.temperature),
            scale_loss,
            self.mini_batch,
            self.device,
        )


def train_supervised(
    start: StartingPoint,
    sources: Sequence[PairSource],
    settings: SupervisedSettings,
    out_dir: Path,
    *,
    name: str | None = None,
    **options: Unpack[StageOptions],
) -> list[float] | None:
    """Train a supervised adapter into `out_dir/<name>/` on a mixture of pair sources (one source per
    batch); the model directory records the instruction used at search time. `name` defaults to the first
    free one of `supervised`, `supervised-2`, ..."""
    name = name or free_adapter_name(start, "supervised")
    return run_stage(
        name,
        lambda: SupervisedStage(start, sources, settings, name),
        start,
        settings,
        out_dir,
        query_instruction=settings.query_instruction,
        **options,
    )

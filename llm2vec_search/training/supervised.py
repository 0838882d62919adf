"""Stage 3 (optional), supervised contrastive training on (query, positive, hard negative) pairs.

Queries get the query instruction (attended to, not pooled, as at search time); passages do not. Each
query's candidates are every positive in the batch plus every hard negative, so a batch of n pairs with
negatives gives each query 2n-1 negatives.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .contrastive import ContrastiveSettings, contrastive_backward, training_encoder
from .data import Pair, batched, shuffled_forever
from .loop import run_stage
from .losses import info_nce
from .setup import StartingPoint

DEFAULT_QUERY_INSTRUCTION = "Given a query, retrieve relevant passages"


@dataclass
class SupervisedSettings(ContrastiveSettings):
    """LLM2Vec's supervised recipe, scaled to one machine: 1000 steps of 64 pairs at 2e-4, no dropout."""

    batch_size: int = 64
    lr: float = 2e-4
    query_instruction: str = DEFAULT_QUERY_INSTRUCTION


class SupervisedStage:
    name = "supervised"

    def __init__(self, start: StartingPoint, pairs: Sequence[Pair], settings: SupervisedSettings) -> None:
        self.encoder, self.model, self.device = training_encoder(start, settings, settings.query_instruction)
        self.pairs = pairs
        self.settings = settings

    def micro_batches(self) -> Iterator[list[Pair]]:
        return batched(shuffled_forever(self.pairs, self.settings.seed), self.settings.batch_size)

    def backward(self, batch: list[Pair], scale_loss: Callable[[torch.Tensor], torch.Tensor]) -> float:
        encoder = self.encoder
        queries = encoder.tokenize([pair.query for pair in batch], encoder.query_instruction)
        passages = encoder.tokenize(
            [pair.positive for pair in batch] + [pair.negative for pair in batch if pair.negative]
        )
        count = len(queries)
        return contrastive_backward(
            encoder._forward,
            queries + passages,
            lambda vectors: info_nce(vectors[:count], vectors[count:], self.settings.temperature),
            scale_loss,
            self.settings.mini_batch,
            self.device,
        )


def train_supervised(
    start: StartingPoint,
    pairs: Sequence[Pair],
    settings: SupervisedSettings,
    out_dir: Path,
    *,
    resume: bool = False,
    record: dict | None = None,
) -> list[float] | None:
    """Train a supervised adapter into `out_dir/supervised/`; the model directory records the instruction."""
    return run_stage(
        SupervisedStage.name,
        lambda: SupervisedStage(start, pairs, settings),
        start,
        settings,
        out_dir,
        resume=resume,
        record=record,
        query_instruction=settings.query_instruction,
    )

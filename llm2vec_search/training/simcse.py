"""Stage 2, unsupervised SimCSE: embed each sentence twice with dropout on; the two views of a sentence are
positives, every other sentence in the batch is a negative (InfoNCE, temperature 0.05, mean pooling)."""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Unpack

import torch

from .contrastive import ContrastiveSettings, contrastive_backward, step_mini_batch, training_encoder
from .data import batched, shuffled_forever
from .loop import StageOptions, run_stage
from .losses import info_nce
from .setup import StartingPoint


@dataclass
class SimCSESettings(ContrastiveSettings):
    """LLM2Vec's SimCSE recipe: 1000 steps of 128 sentences (128 tokens) at 3e-5, attention dropout 0.3."""

    batch_size: int = 128
    lr: float = 3e-5
    max_length: int = 128
    dropout: float = 0.3


class SimCSEStage:
    name = "simcse"

    def __init__(self, start: StartingPoint, sentences: Sequence[str], settings: SimCSESettings) -> None:
        self.encoder, self.model, self.device = training_encoder(start, settings)
        self.sentences = sentences
        self.settings = settings
        self.mini_batch = step_mini_batch(self.encoder, settings, 2 * settings.batch_size, self.device)

    def micro_batches(self) -> Iterator[list[str]]:
        return batched(shuffled_forever(self.sentences, self.settings.seed), self.settings.batch_size)

    def backward(self, batch: list[str], scale_loss: Callable[[torch.Tensor], torch.Tensor]) -> float:
        items = self.encoder.tokenize(batch)
        count = len(items)
        return contrastive_backward(
            self.encoder.forward,
            items + items,  # two views of each sentence; dropout makes them differ
            lambda vectors: info_nce(vectors[:count], vectors[count:], self.settings.temperature),
            scale_loss,
            self.mini_batch,
            self.device,
        )


def train_simcse(
    start: StartingPoint,
    sentences: Sequence[str],
    settings: SimCSESettings,
    out_dir: Path,
    **options: Unpack[StageOptions],
) -> list[float] | None:
    """Train a SimCSE adapter on `sentences` into `out_dir/simcse/`; None if a resumed run finds it done."""

    def build() -> SimCSEStage:  # the model loads only once run_stage's checks have passed
        return SimCSEStage(start, sentences, settings)

    return run_stage(SimCSEStage.name, build, start, settings, out_dir, **options)

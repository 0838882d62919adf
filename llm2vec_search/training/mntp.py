"""Stage 1, masked next-token prediction (MNTP): teach a decoder, now attending both ways, to use the
right-hand context. Mask ~20% of tokens and predict each from the output one position to its left."""

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Unpack

import torch

from ..errors import L2VError
from .data import batched, mask_for_mntp, mntp_mask_id, packed_blocks
from .loop import StageOptions, run_stage, training_precision
from .losses import mntp_loss
from .settings import TrainSettings
from .setup import StartingPoint, add_lora, load_causal_lm, load_tokenizer

log = logging.getLogger(__name__)


@dataclass
class MNTPSettings(TrainSettings):
    """LLM2Vec's MNTP recipe: 1000 steps of 32 blocks of 512 tokens at 5e-5, 20% masked."""

    mask_prob: float = 0.2

    def validate(self) -> None:
        super().validate()
        if not 0 < self.mask_prob < 1:
            raise L2VError(f"mask-prob must be in (0, 1), got {self.mask_prob}")


class MNTPStage:
    name = "mntp"

    def __init__(self, start: StartingPoint, texts: Sequence[str], settings: MNTPSettings) -> None:
        self.device, _ = training_precision(settings.device, settings.dtype)
        weights = start.weights_dir()
        self.tokenizer = load_tokenizer(weights)
        causal_lm = load_causal_lm(start)
        self.inner = causal_lm.model
        self.lm_head = causal_lm.get_output_embeddings()
        self.softcapping = getattr(causal_lm.config, "final_logit_softcapping", None)
        causal_lm.requires_grad_(False)  # the LM head too, when it is not tied to the embeddings
        self.model = add_lora(self.inner, settings)
        causal_lm.to(self.device)
        if self.device.type == "cuda":
            self.inner.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.texts = texts
        self.settings = settings
        self.mask_id = mntp_mask_id(self.tokenizer)
        self.special_ids = self.tokenizer.all_special_ids
        log.info(
            "MNTP masks with %r (id %d)", self.tokenizer.convert_ids_to_tokens(self.mask_id), self.mask_id
        )

    def micro_batches(self) -> Iterator[torch.Tensor]:
        blocks = packed_blocks(self.tokenizer, self.texts, self.settings.max_length, self.settings.seed)
        for group in batched(blocks, self.settings.batch_size):
            yield torch.tensor(group)

    def backward(self, batch: torch.Tensor, scale_loss: Callable[[torch.Tensor], torch.Tensor]) -> float:
        inputs, labels = mask_for_mntp(
            batch, self.special_ids, self.mask_id, len(self.tokenizer), self.settings.mask_prob
        )
        hidden = self.inner(
            input_ids=inputs.to(self.device), attention_mask=torch.ones_like(inputs, device=self.device)
        ).last_hidden_state
        loss = mntp_loss(hidden, labels.to(self.device), self.lm_head, self.softcapping)
        scale_loss(loss).backward()
        return loss.item()


def train_mntp(
    start: StartingPoint,
    texts: Sequence[str],
    settings: MNTPSettings,
    out_dir: Path,
    **options: Unpack[StageOptions],
) -> list[float] | None:
    """Train an MNTP adapter on `texts` into `out_dir/mntp/`; None if a resumed run finds it done."""

    def build() -> MNTPStage:  # the model loads only once run_stage's checks have passed
        return MNTPStage(start, texts, settings)

    return run_stage(MNTPStage.name, build, start, settings, out_dir, **options)

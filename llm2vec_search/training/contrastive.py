"""What SimCSE and supervised training share: dropout for training, and GradCache steps.

GradCache (Gao et al. 2021) makes the contrastive batch independent of memory: embed the whole batch without
a graph in chunks of `mini_batch` texts, compute the loss and its gradient with respect to the embeddings,
then re-run each chunk with a graph and back-propagate the cached gradient into it. The re-run restores the
RNG state the first pass used for that chunk, so dropout draws the same masks and the gradients are exact.
"""

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..encoder.encoder import Encoder, Tokenized
from ..errors import L2VError
from .loop import training_precision
from .settings import TrainSettings
from .setup import StartingPoint, add_lora

log = logging.getLogger(__name__)

Embed = Callable[[list[Tokenized]], torch.Tensor]
ScaleLoss = Callable[[torch.Tensor], torch.Tensor]
# Share of the available memory a training step may plan to fill with activations.
MEMORY_HEADROOM = 0.6


def set_attention_dropout(model: nn.Module, probability: float) -> None:
    """Set the attention dropout of every layer (the config value is read when layers are built, so the
    built layers are changed too). Every supported family (Llama, Mistral, Qwen 2/3, Gemma 1/2/3) has
    attention dropout and none has hidden-state dropout, so SimCSE's noise is attention dropout, as in
    LLM2Vec.
    """
    model.config.attention_dropout = probability
    layers = [m for m in model.modules() if isinstance(getattr(m, "attention_dropout", None), float)]
    if not layers:
        raise L2VError(f"{type(model).__name__} has no attention dropout to train SimCSE with")
    for layer in layers:
        layer.attention_dropout = probability


def _rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _restore_rng(state: tuple[torch.Tensor, torch.Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def contrastive_backward(
    embed: Embed,
    items: Sequence[Tokenized],
    loss_of: Callable[[torch.Tensor], torch.Tensor],
    scale_loss: ScaleLoss,
    mini_batch: int | None = None,
    device: torch.device | None = None,
) -> float:
    """Embed `items`, compute `loss_of(embeddings)` and back-propagate it; returns the loss.

    With `mini_batch` smaller than the batch this is a GradCache step: same gradients, memory for
    `mini_batch` texts only.
    """
    items = list(items)
    if not mini_batch or mini_batch >= len(items):
        loss = loss_of(embed(items))
        scale_loss(loss).backward()
        return loss.item()
    device = device or torch.device("cpu")
    chunks = [items[i : i + mini_batch] for i in range(0, len(items), mini_batch)]
    states, cached = [], []
    with torch.no_grad():
        for chunk in chunks:
            states.append(_rng_state(device))
            cached.append(embed(chunk))
    embeddings = torch.cat(cached).detach().requires_grad_()
    loss = loss_of(embeddings)
    scale_loss(loss).backward()
    gradients = embeddings.grad.split([len(chunk) for chunk in chunks])
    for chunk, state, gradient in zip(chunks, states, gradients, strict=True):
        _restore_rng(state, device)
        embed(chunk).backward(gradient)
    return loss.item()


@dataclass
class ContrastiveSettings(TrainSettings):
    """Options SimCSE and supervised training add: dropout noise, InfoNCE temperature, GradCache chunk."""

    dropout: float = 0.0
    temperature: float = 0.05
    mini_batch: int | None = None  # texts per forward pass; None: the whole batch at once

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.dropout < 1:
            raise L2VError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.temperature > 0:
            raise L2VError(f"temperature must be positive, got {self.temperature}")
        if self.mini_batch is not None and self.mini_batch < 1:
            raise L2VError(f"mini-batch must be at least 1, got {self.mini_batch}")


def activation_bytes_per_token(config, trained_layers: int | None = None) -> int:
    """Memory a token of a training batch holds for the backward pass, in fp32 on CPU, without gradient
    checkpointing: trained layers × (24 × hidden + 6 × MLP width) floats, ~2.1 MB for all of Gemma 3 270M
    (18 layers, 640 hidden, 2048 MLP), whose supervised steps of 48 texts of up to 128 tokens peaked at ~15 GB
    resident. Layers below the trained ones keep nothing (`add_lora` with `lora_layers`)."""
    layers = trained_layers or config.num_hidden_layers
    return 4 * layers * (24 * config.hidden_size + 6 * config.intermediate_size)


def available_memory() -> int:
    """Bytes the system can still give this process (MemAvailable where /proc has it)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def fitting_mini_batch(
    config, settings: "ContrastiveSettings", texts_per_step: int, available: int | None = None
) -> int | None:
    """The GradCache chunk a CPU step needs so that its activations fit in memory: the asked `mini_batch`,
    None when the whole batch fits, or the most texts that fit. Raises when a single text cannot fit."""
    if settings.mini_batch is not None:
        return settings.mini_batch
    available = available_memory() if available is None else available
    per_text = activation_bytes_per_token(config, settings.lora_layers) * settings.max_length
    fits = int(available * MEMORY_HEADROOM // per_text)
    if fits < 1:
        raise L2VError(
            f"training one text of {settings.max_length} tokens needs ~{per_text / 2**30:.1f} GiB, more than "
            f"the {available / 2**30:.1f} GiB available; lower --max-length"
        )
    if fits >= texts_per_step:
        return None
    log.info(
        "a step of %d texts × %d tokens needs ~%.1f GiB; embedding it in GradCache chunks of %d texts",
        texts_per_step,
        settings.max_length,
        per_text * texts_per_step / 2**30,
        fits,
    )
    return fits


def training_encoder(
    start: StartingPoint, settings: ContrastiveSettings, query_instruction: str | None = None
):
    """An `Encoder` (earlier adapters merged, mean pooling, bidirectional) with a fresh LoRA adapter and
    training dropout; returns (encoder, PEFT model, device). Training embeds texts exactly as search will."""
    device, _ = training_precision(settings.device, settings.dtype)
    encoder = Encoder.from_pretrained(
        str(start.source_dir or start.base_model),
        pooling="mean",
        device=str(device),
        dtype="float32",
        max_length=settings.max_length,
        bidirectional=True,
        query_instruction=query_instruction,
        layers=start.layers,
    )
    set_attention_dropout(encoder.model, settings.dropout)
    peft_model = add_lora(encoder.model, settings)
    if device.type == "cuda":
        encoder.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return encoder, peft_model, device


def step_mini_batch(
    encoder: Encoder, settings: ContrastiveSettings, texts_per_step: int, device: torch.device
) -> int | None:
    """GradCache chunk for a stage: on CPU sized to the free memory; on a GPU (gradient checkpointing on)
    only what was asked."""
    if device.type == "cuda":
        return settings.mini_batch
    return fitting_mini_batch(encoder.model.config, settings, texts_per_step)

"""`TrainSettings`: the options every training stage shares, on their own so that the loop (which runs a
stage) and the set-up (which builds the model a stage trains) both read them without importing each other."""

from dataclasses import dataclass
from typing import ClassVar

from ..errors import L2VError


@dataclass
class TrainSettings:
    """Options every stage shares; stages subclass this with their own and their recipe's defaults."""

    steps: int = 1000
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 5e-5
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    max_length: int = 512
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_layers: int | None = None  # LoRA on the top N layers only (None: every layer)
    seed: int = 42
    save_every: int = 100
    device: str = "auto"
    dtype: str = "auto"
    # Distillation may run no step at all: its head, fitted by least squares, is then all that is trained.
    min_steps: ClassVar[int] = 1

    def validate(self) -> None:
        if self.steps < self.min_steps:
            raise L2VError(f"steps must be at least {self.min_steps}, got {self.steps}")
        for name in ("batch_size", "grad_accum", "lora_r", "lora_alpha", "save_every"):
            if getattr(self, name) < 1:
                raise L2VError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.max_length < 8:
            raise L2VError(f"max-length must be at least 8 tokens, got {self.max_length}")
        if not self.lr > 0:
            raise L2VError(f"lr must be positive, got {self.lr}")
        if self.steps and not 0 <= self.warmup_steps < self.steps:
            raise L2VError(f"warmup-steps must be in [0, steps), got {self.warmup_steps}")
        if self.lora_layers is not None and self.lora_layers < 1:
            raise L2VError(f"lora-layers must be at least 1, got {self.lora_layers}")
        if not 0 <= self.lora_dropout < 1:
            raise L2VError(f"lora-dropout must be in [0, 1), got {self.lora_dropout}")

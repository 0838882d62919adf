"""Distillation: the student learns to reproduce a trained embedder's vectors (embedding matching, as LEAF
and EmbeddingGemma do). Every text gives a whole target vector, where a contrastive step learns one ranking
per batch, and plain texts are enough: no labels, no hard negatives.

Made cheap for a CPU by construction:
- the teacher's vectors are computed once per (teacher, text set) and cached;
- only the top `lora_layers` layers train, so the frozen layers below run once per text: their output is
  cached, and every epoch runs the top layers alone;
- a linear head maps the student's pooled vector to the teacher's dimension; it starts as the least-squares
  fit of the frozen features, ships with the model and is applied at inference (`Encoder.project`).
Loss: 1 - cosine to the teacher's vector, plus `relational_weight` × the squared difference between the
student's and the teacher's in-batch similarity matrices (what ranking depends on).
"""

import logging
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Unpack

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..encoder.layers import layer_view
from ..encoder.models import cache_dir
from ..errors import L2VError
from .contrastive import ContrastiveSettings, training_encoder
from .data import read_texts
from .distill_dev import DevProbe, DevTexts, append_row, teacher_scores
from .features import HEAD_FILE, TopLayers, cached_features, texts_key
from .loop import StageOptions, TrainStep, run_stage
from .setup import StartingPoint, free_adapter_name
from .supervised import DEFAULT_QUERY_INSTRUCTION

log = logging.getLogger(__name__)

HEAD_FIT_TEXTS = 2048  # texts whose frozen features fit the initial head


@dataclass
class DistillSettings(ContrastiveSettings):
    """Top 4 layers + head, 32 texts a step at 5e-4; texts cut at 100 words for student and teacher alike."""

    batch_size: int = 32
    lr: float = 5e-4
    warmup_steps: int = 20
    max_length: int = 192
    lora_r: int = 32
    lora_alpha: int = 64
    lora_layers: int | None = 4
    min_steps: ClassVar[int] = 0
    relational_weight: float = 1.0
    max_words: int = 100
    query_instruction: str = DEFAULT_QUERY_INSTRUCTION

    def validate(self) -> None:
        super().validate()
        if self.lora_layers is None:
            raise L2VError("distill trains the top layers from cached features: give --lora-layers N")
        if self.relational_weight < 0:
            raise L2VError(f"relational-weight must be at least 0, got {self.relational_weight}")
        if self.max_words < 1:
            raise L2VError(f"max-words must be at least 1, got {self.max_words}")


@dataclass(frozen=True)
class DistillText:
    text: str
    query: bool  # queries get the query instruction (the teacher takes none)


def read_distill_texts(
    queries: Sequence[str], passages: Sequence[str], per_file: int | None, max_words: int, seed: int
) -> list[DistillText]:
    """Texts from `FILE[:FIELD][:COUNT]` specs (field default `text`), each file's distinct texts shuffled
    with `seed` and cut to COUNT (default `per_file`); each cut to its first `max_words` words (the teacher
    sees the same)."""
    found: dict[DistillText, None] = {}
    for specs, is_query in ((queries, True), (passages, False)):
        for spec in specs:
            path, field, count = parse_text_spec(spec, per_file)
            texts = list(dict.fromkeys(read_texts([path], field)))
            random.Random(seed).shuffle(texts)
            for text in texts[:count]:
                found[DistillText(" ".join(text.split()[:max_words]), is_query)] = None
    if not found:
        raise L2VError("no texts to distill on: give --queries and/or --passages files")
    return list(found)


def parse_text_spec(spec: str, per_file: int | None) -> tuple[Path, str, int | None]:
    """`FILE[:FIELD][:COUNT]` → (file, field, count)."""
    path, _, rest = spec.partition(":")
    field, _, count = rest.partition(":")
    if count and not count.isdigit():
        raise L2VError(f"{spec!r}: COUNT in FILE[:FIELD][:COUNT] must be a whole number")
    return Path(path), field or "text", int(count) if count else per_file


def tokenize_texts(encoder, texts: Sequence[DistillText]) -> list:
    """Queries with the encoder's query instruction, passages without, in the order of `texts`."""
    items: list = [None] * len(texts)
    for query, instruction in ((True, encoder.query_instruction), (False, None)):
        indices = [i for i, item in enumerate(texts) if item.query == query]
        if indices:
            tokenized = encoder.tokenize([texts[i].text for i in indices], instruction)
            for i, item in zip(indices, tokenized, strict=True):
                items[i] = item
    return items


def teacher_vectors(teacher, texts: Sequence[DistillText], progress=None) -> np.ndarray:
    """The teacher's normalized vectors for `texts`, computed once and kept in the model cache."""
    path = cache_dir() / "distill" / f"teacher-{texts_key(texts, teacher.fingerprint())}.npy"
    if path.is_file():
        return np.load(path)
    vectors = teacher.encode([item.text for item in texts], progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".tmp.npy")
    np.save(staging, vectors)
    staging.replace(path)
    return vectors


def fit_head(pooled: torch.Tensor, targets: torch.Tensor, ridge: float = 1e-3) -> nn.Linear:
    """The least-squares linear map (with bias) from pooled student vectors to the teacher's vectors."""
    mean_in, mean_out = pooled.mean(0), targets.mean(0)
    centred = pooled - mean_in
    gram = centred.T @ centred
    gram += ridge * gram.diagonal().mean() * torch.eye(gram.shape[0])
    weight = torch.linalg.solve(gram, centred.T @ (targets - mean_out)).T
    head = nn.Linear(pooled.shape[1], targets.shape[1])
    head.weight.data.copy_(weight)
    head.bias.data.copy_(mean_out - weight @ mean_in)
    return head


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, relational_weight: float) -> torch.Tensor:
    """1 - cosine to the teacher, plus the mean squared gap between the in-batch similarity matrices."""
    student = F.normalize(student, dim=-1)
    loss = (1 - (student * teacher).sum(-1)).mean()
    if relational_weight and len(student) > 1:
        loss = loss + relational_weight * F.mse_loss(student @ student.T, teacher @ teacher.T)
    return loss


def length_bucketed_batches(lengths: Sequence[int], batch_size: int, seed: int) -> Iterator[list[int]]:
    """Endless epochs: each shuffles the texts, groups them by similar length (little padding), and shuffles
    the batches; a pure function of `lengths` and `seed`, so a resumed run sees the same stream."""
    for epoch in range(1_000_000):
        rng = random.Random(seed * 1_000_003 + epoch)
        order = list(range(len(lengths)))
        rng.shuffle(order)
        pool_size = batch_size * 50
        batches = []
        for start in range(0, len(order), pool_size):
            block = sorted(order[start : start + pool_size], key=lambda i: lengths[i])
            batches += [block[i : i + batch_size] for i in range(0, len(block), batch_size)]
        rng.shuffle(batches)
        yield from batches


class DistillStage:
    def __init__(
        self,
        start: StartingPoint,
        texts: Sequence[DistillText],
        targets: np.ndarray,
        settings: DistillSettings,
        dev: DevTexts | None = None,
        on_phase: Callable[[str, int, int], None] | None = None,
        name: str = "distill",
    ) -> None:
        self.name = name
        self.settings = settings
        self.targets = torch.from_numpy(targets)
        encoder, peft_model, self.device = training_encoder(start, settings, settings.query_instruction)
        self.encoder = encoder
        inner = peft_model.get_base_model()
        split = inner.config.num_hidden_layers - int(settings.lora_layers or 0)
        bottom = layer_view(inner, 0, split, final_norm=False)
        items = tokenize_texts(encoder, texts)
        key = texts_key(texts, encoder.fingerprint, split, settings.max_length, encoder.query_instruction)
        phase = (lambda done, total: on_phase("features", done, total)) if on_phase else None
        self.features = cached_features(
            bottom, items, encoder.tokenizer.pad_token_id, self.device, key, phase
        )
        self.lengths = [len(s) for s in self.features.states]
        self.probe = DevProbe(dev, encoder, bottom, self.device) if dev else None
        top = layer_view(inner, split, None, final_norm=True)
        head = self._initial_head(top, settings.seed)
        self.model = TopLayers(peft_model, top, head, encoder.pooling).to(self.device)

    @torch.no_grad()
    def _initial_head(self, top: nn.Module, seed: int) -> nn.Linear:
        """Least squares from the untrained top layers' pooled output to the teacher, on a sample of texts."""
        sample = random.Random(seed).sample(range(len(self.lengths)), min(HEAD_FIT_TEXTS, len(self.lengths)))
        sample.sort(key=lambda i: self.lengths[i])  # batches of similar length: little padding
        probe = TopLayers(nn.Module(), top, nn.Identity(), self.encoder.pooling).eval()
        pooled = torch.cat(
            [probe(self.features, sample[i : i + 64], self.device).cpu() for i in range(0, len(sample), 64)]
        )
        return fit_head(pooled, self.targets[sample])

    def micro_batches(self) -> Iterator[list[int]]:
        return length_bucketed_batches(self.lengths, self.settings.batch_size, self.settings.seed)

    def backward(self, batch: list[int], scale_loss: Callable[[torch.Tensor], torch.Tensor]) -> float:
        student = self.model(self.features, batch, self.device)
        loss = distill_loss(student, self.targets[batch].to(self.device), self.settings.relational_weight)
        scale_loss(loss).backward()
        return float(loss.detach())


def train_distill(
    start: StartingPoint,
    texts: Sequence[DistillText],
    teacher,
    settings: DistillSettings,
    out_dir: Path,
    *,
    dev_data: Path | None = None,
    on_phase: Callable[[str, int, int], None] | None = None,
    name: str | None = None,
    **options: Unpack[StageOptions],
) -> list[float] | None:
    """Distil `teacher` into the model at `start`; writes `out_dir/distill/` (LoRA adapter + head), or
    `distill-2/`, ... when `start` was distilled already (a distillation continued on new texts).

    With `dev_data` (the folder holding `squad_dev/` and `stsbenchmark/`), the dev sample is scored at the
    start and at every checkpoint into `out_dir/distill-dev.jsonl`, with the teacher's own row first.
    """
    phase = (lambda done, total: on_phase("teacher", done, total)) if on_phase else None
    targets = teacher_vectors(teacher, texts, phase)
    dev = DevTexts.load(dev_data) if dev_data else None
    stages: list[DistillStage] = []
    name = name or free_adapter_name(start, "distill")

    def build() -> DistillStage:
        stages.append(DistillStage(start, texts, targets, settings, dev, on_phase, name))
        if dev and not options.get("resume"):
            dev_log = out_dir / "distill-dev.jsonl"
            dev_log.unlink(missing_ok=True)
            append_row(dev_log, {"step": "teacher", **teacher_scores(teacher, dev)})
            append_row(dev_log, {"step": 0, "texts_seen": 0, **stages[0].probe.evaluate(stages[0].model)})
        return stages[0]

    user_on_step = options.pop("on_step", None)

    def on_step(step: TrainStep) -> None:
        if user_on_step:
            user_on_step(step)
        if dev and (step.step % settings.save_every == 0 or step.step == step.steps):
            seen = {"step": step.step, "texts_seen": step.step * settings.batch_size * settings.grad_accum}
            append_row(out_dir / "distill-dev.jsonl", {**seen, **stages[0].probe.evaluate(stages[0].model)})

    record = {**(options.pop("record", None) or {}), "texts": len(texts), "teacher": str(teacher.directory)}
    return run_stage(
        name,
        build,
        start,
        settings,
        out_dir,
        record=record,
        head=f"{name}/{HEAD_FILE}",
        on_step=on_step,
        query_instruction=options.pop("query_instruction", None) or settings.query_instruction,
        **options,
    )

"""The one training loop every stage runs: accumulation, clipping, LR schedule, mixed precision, progress,
checkpoints and resume, and a loss log with its curve.

Determinism: the global torch RNG is re-seeded from (seed, step) at the start of every optimizer step, and
each stage's data stream is a pure function of its files and seed. A resumed run therefore skips the
micro-batches already used, reloads adapter, optimizer and schedule, and continues exactly as an
uninterrupted run would have.
"""

import json
import logging
import math
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Protocol, TypedDict

import torch
from torch import nn

from ..encoder.device import pick_device
from ..errors import L2VError
from .settings import TrainSettings
from .setup import StartingPoint, prepare_output, record_stage, versions

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
# A checkpoint's adapter, saved as a finished stage's is: a checkpoint loads or ships as it is.
CHECKPOINT_ADAPTER = "adapter"
TRAIN_CONFIG = "train-config.json"
# Checkpoints that keep their optimizer state (to resume from); older ones keep only their adapter, small
# enough to keep every one, so a run's checkpoints can be compared on a dev set after it ends.
RESUMABLE_CHECKPOINTS = 2
# Settings that may change between an interrupted run and its resumption without changing the result.
FREE_ON_RESUME = {"save_every", "device"}


@dataclass
class TrainStep:
    """Passed to the `on_step` callback after each optimizer step: where the stage is, its loss, its pace."""

    stage: str
    step: int
    steps: int
    loss: float
    steps_per_second: float


StepCallback = Callable[[TrainStep], None]


class StageOptions(TypedDict, total=False):
    """How a stage's training function (`train_mntp`, ...) runs, passed through to `run_stage`."""

    resume: bool
    record: dict | None
    query_instruction: str | None
    on_step: StepCallback | None


class Stage(Protocol):
    """A training objective over a PEFT-wrapped model."""

    name: str
    model: nn.Module  # the PEFT model; its trainable parameters are the adapter
    device: torch.device

    def micro_batches(self) -> Iterator[Any]:
        """An endless, deterministic stream of micro-batches."""
        ...

    def backward(self, batch: Any, scale_loss: Callable[[torch.Tensor], torch.Tensor]) -> float:
        """Compute the loss on `batch`, back-propagate `scale_loss(loss)`, return the loss."""
        ...


def training_precision(
    device: str, dtype: str, family: str | None = None
) -> tuple[torch.device, torch.dtype | None]:
    """(device, autocast dtype or None). Weights stay fp32; `auto` autocasts as inference would run (bf16 on
    GPUs that have it; fp16 on older ones unless the family overflows it) and is plain fp32 on CPU."""
    torch_device, torch_dtype = pick_device(device, dtype, family)
    return torch_device, None if torch_dtype == torch.float32 else torch_dtype


def step_seed(seed: int, step: int) -> int:
    return seed * 1_000_003 + step


def linear_schedule(steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Linear warm-up to the full rate, then linear decay towards zero at `steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (steps - step) / max(1, steps - warmup_steps))

    return factor


def run_stage(
    name: str,
    build: Callable[[], Stage],
    start: StartingPoint,
    settings: TrainSettings,
    out_dir: Path,
    *,
    resume: bool = False,
    record: dict | None = None,
    query_instruction: str | None = None,
    on_step: StepCallback | None = None,
    head: str | None = None,
) -> list[float] | None:
    """Check the settings and the output directory, build the stage (loading the model), train it, and list
    its adapter (and `head`, a file the stage saves with it) in `out_dir/l2v-model.json`. Returns the step
    losses, or None when a resumed run finds the stage already trained."""
    settings.validate()
    if not prepare_output(out_dir, start, name, resume):
        log.info("%s is already trained in %s", name, out_dir)
        return None
    losses = train(build(), settings, out_dir, resume=resume, record=record, on_step=on_step)
    record_stage(out_dir, start, name, query_instruction, head)
    return losses


def train(
    stage: Stage,
    settings: TrainSettings,
    out_dir: Path,
    *,
    resume: bool = False,
    record: dict | None = None,
    on_step: StepCallback | None = None,
) -> list[float]:
    """Run `settings.steps` optimizer steps of `stage`; save the adapter as `out_dir/<stage.name>/`.

    Returns the loss of every step run in this call; `on_step` hears of each step as it ends.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoints = out_dir / CHECKPOINTS / stage.name
    log_path = out_dir / f"{stage.name}-loss.jsonl"
    parameters = [p for p in stage.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_schedule(settings.steps, settings.warmup_steps)
    )
    family = getattr(getattr(stage.model, "config", None), "model_type", None)
    _, autocast_dtype = training_precision(settings.device, settings.dtype, family)
    scaler = torch.amp.GradScaler(stage.device.type, enabled=autocast_dtype == torch.float16)
    start = 0
    latest = _latest_checkpoint(checkpoints) if resume else None
    if latest is not None:
        start = _load_checkpoint(latest, stage.model, optimizer, scheduler, scaler, settings)
        log.info("resuming %s from step %d (%s)", stage.name, start, latest)
        _truncate_log(log_path, start)
    else:
        if resume:
            log.info("no %s checkpoint in %s; starting from step 0", stage.name, checkpoints)
        shutil.rmtree(checkpoints, ignore_errors=True)
        log_path.unlink(missing_ok=True)
    _write_train_config(out_dir, stage.name, settings, record or {})

    batches = islice(stage.micro_batches(), start * settings.grad_accum, None)
    autocast = torch.autocast(stage.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None)
    losses: list[float] = []
    began = time.perf_counter()
    stage.model.train()
    with log_path.open("a") as log_file:
        step = start
        try:
            for step in range(start, settings.steps):
                torch.manual_seed(step_seed(settings.seed, step))
                optimizer.zero_grad(set_to_none=True)
                loss = 0.0
                for batch in islice(batches, settings.grad_accum):
                    with autocast:
                        loss += stage.backward(batch, lambda x: scaler.scale(x) / settings.grad_accum)
                loss /= settings.grad_accum
                if not math.isfinite(loss):
                    raise L2VError(
                        f"{stage.name} loss is {loss} at step {step + 1}; lower --lr or use --dtype float32"
                    )
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(parameters, settings.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                lr = scheduler.get_last_lr()[0]
                scheduler.step()
                losses.append(loss)
                elapsed = time.perf_counter() - began
                # seconds: since this run (or its resumption) started its first step
                row = {"step": step + 1, "loss": round(loss, 6), "lr": lr, "seconds": round(elapsed, 2)}
                log_file.write(json.dumps(row) + "\n")
                log_file.flush()
                if on_step:
                    on_step(
                        TrainStep(stage.name, step + 1, settings.steps, loss, (step + 1 - start) / elapsed)
                    )
                if (step + 1) % settings.save_every == 0 or step + 1 == settings.steps:
                    _save_checkpoint(
                        checkpoints, step + 1, stage.model, optimizer, scheduler, scaler, settings
                    )
                    plot_losses(log_path, out_dir / f"{stage.name}-loss.png")
        except KeyboardInterrupt:
            saved = _latest_checkpoint(checkpoints)
            where = f"the checkpoint at step {int(saved.name.split('-')[-1])}" if saved else "step 0"
            log.warning(
                "%s interrupted during step %d; --resume continues from %s", stage.name, step + 1, where
            )
            raise
    stage.model.eval()
    _save_adapter(stage.model, out_dir / stage.name)
    return losses


def _save_adapter(model: nn.Module, directory: Path) -> None:
    """Write the PEFT adapter next to its final place, then swap it in, so a crash leaves the old one."""
    staging = directory.with_name(f".{directory.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)


def checkpoint_adapter(out_dir: Path, stage: str, step: int) -> Path:
    """Where a run in `out_dir` keeps the adapter of `stage` at `step` (a step it saved a checkpoint at)."""
    return _step_dir(out_dir / CHECKPOINTS / stage, step) / CHECKPOINT_ADAPTER


def _step_dir(checkpoints: Path, step: int) -> Path:
    return checkpoints / f"step-{step:07d}"


def _save_checkpoint(directory, step, model, optimizer, scheduler, scaler, settings) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    final = _step_dir(directory, step)
    staging = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    model.save_pretrained(staging / CHECKPOINT_ADAPTER)
    state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "settings": asdict(settings),
    }
    torch.save(state, staging / "state.pt")
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    for old in sorted(directory.glob("step-*"))[:-RESUMABLE_CHECKPOINTS]:
        (old / "state.pt").unlink(missing_ok=True)


def _latest_checkpoint(directory: Path) -> Path | None:
    found = sorted(p for p in directory.glob("step-*") if (p / "state.pt").is_file())
    return found[-1] if found else None


def _load_checkpoint(path, model, optimizer, scheduler, scaler, settings) -> int:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    try:
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
        adapter = load_file(path / CHECKPOINT_ADAPTER / "adapter_model.safetensors")
    except Exception as exc:  # a truncated or foreign file, or one from before checkpoints held an adapter
        raise L2VError(f"cannot read checkpoint {path}: {exc}") from exc
    saved, current = state["settings"], asdict(settings)
    changed = [
        f"{key} {saved.get(key)!r} → {value!r}"
        for key, value in current.items()
        if key not in FREE_ON_RESUME and saved.get(key) != value
    ]
    if changed:
        raise L2VError(
            f"cannot resume {path}: settings differ from the interrupted run ({'; '.join(changed)})"
        )
    if hasattr(model, "load_adapter_state"):  # a stage that saves more than a PEFT adapter (distill's head)
        model.load_adapter_state(path / CHECKPOINT_ADAPTER)
    else:
        set_peft_model_state_dict(model, adapter)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    return int(state["step"])


def _truncate_log(path: Path, step: int) -> None:
    """Keep the log lines of the steps a resumed run does not redo."""
    if not path.is_file():
        return
    rows = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    path.write_text("".join(row + "\n" for row in rows))


def _write_train_config(out_dir: Path, name: str, settings: TrainSettings, record: dict) -> None:
    path = out_dir / TRAIN_CONFIG
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):  # first stage, or a damaged file: the current settings are what counts
        config = {"stages": {}}
    config["stages"][name] = {"settings": asdict(settings), **record}
    config["command"] = sys.argv
    config["versions"] = versions()
    path.write_text(json.dumps(config, indent=2, default=str) + "\n")


def plot_losses(log_path: Path, png_path: Path) -> None:
    """The loss per step and its moving average, as a PNG (matplotlib's Agg canvas; no display needed)."""
    import numpy as np
    from matplotlib.figure import Figure

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line]
    steps = np.array([row["step"] for row in rows])
    losses = np.array([row["loss"] for row in rows])
    window = max(1, len(losses) // 20)
    totals = np.concatenate([[0.0], np.cumsum(losses)])
    starts = np.maximum(0, np.arange(len(losses)) - window + 1)
    smoothed = (totals[1:] - totals[starts]) / (np.arange(len(losses)) + 1 - starts)
    figure = Figure(figsize=(7, 4))
    axes = figure.subplots()
    axes.plot(steps, losses, alpha=0.35, label="loss")
    axes.plot(steps, smoothed, label=f"moving average ({window} steps)")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title(log_path.stem)
    axes.legend()
    figure.tight_layout()
    figure.savefig(png_path, dpi=100)

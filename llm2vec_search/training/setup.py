"""Where a training stage starts (a base model, or a trained directory whose adapters are merged first) and
what it leaves: a LoRA adapter sub-directory listed, in order, in the output's `l2v-model.json`."""

import json
import platform
import re
import shutil
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

from ..encoder.adapters import ModelDirConfig, apply_adapters, is_model_dir, peft_deprecations_silenced
from ..encoder.bidirectional import set_bidirectional
from ..encoder.encoder import DEFAULT_MAX_LENGTH, SHIPPED_DEFAULT
from ..encoder.models import DEFAULT_BASE, model_family, resolve_weights
from ..errors import L2VError
from .settings import TrainSettings

# The projections LLM2Vec puts LoRA on; every supported family names its layers this way.
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class StartingPoint:
    """The model a stage trains on top of: a base model spec plus adapters already trained on it."""

    base_model: str
    adapter_dirs: list[Path] = field(default_factory=list)
    source_dir: Path | None = None  # the trained model directory given as --model, if any
    max_length: int = DEFAULT_MAX_LENGTH
    query_instruction: str | None = None
    head: str | None = None  # the trained model's head file, relative to its directory
    layers: int | None = None  # a pruned model's layer count (None: all of the base's)

    @classmethod
    def from_spec(cls, spec: str) -> "StartingPoint":
        path = Path(spec).expanduser()
        if spec == "default":
            if not is_model_dir(SHIPPED_DEFAULT):
                return cls(base_model=DEFAULT_BASE)
            path = SHIPPED_DEFAULT
        if not is_model_dir(path):
            return cls(base_model=str(path.resolve()) if path.exists() else spec)
        config = ModelDirConfig.load(path)
        return cls(
            base_model=config.base_model,
            adapter_dirs=[path / name for name in config.adapters],
            source_dir=path.resolve(),
            max_length=config.max_length,
            query_instruction=config.query_instruction,
            head=config.head,
            layers=config.layers,
        )

    def weights_dir(self) -> Path:
        weights, _ = resolve_weights(self.base_model)
        model_family(weights / "config.json")
        return weights

    def pruned(self, layers: int) -> "StartingPoint":
        """This starting point with only its first `layers` layers: what a stage then trains and saves."""
        config = json.loads((self.weights_dir() / "config.json").read_text())
        available = self.layers or int(config.get("num_hidden_layers", 0))
        if not 1 <= layers <= available:
            raise L2VError(f"keep-layers must be in [1, {available}] for this model, got {layers}")
        return replace(self, layers=layers)


def load_tokenizer(weights_dir: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(weights_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(start: StartingPoint) -> nn.Module:
    """The model with its LM head (MNTP needs it), earlier adapters merged, attention bidirectional."""
    from transformers import AutoModelForCausalLM

    weights = start.weights_dir()
    model, info = AutoModelForCausalLM.from_pretrained(weights, dtype=torch.float32, output_loading_info=True)
    if any("lm_head" in key for key in info["missing_keys"]):
        raise L2VError(
            f"{weights} has no LM head weights (and does not tie them to the embeddings); MNTP needs them"
        )
    model.model = apply_adapters(model.model, start.adapter_dirs, start.layers)
    set_bidirectional(model, True)
    return model


def lora_targets(model: nn.Module, top_layers: int | None) -> list[str]:
    """The projections to put LoRA on: by name in every layer, or by full module name in the top
    `top_layers` layers (PEFT's own layer selection expects a prefix before `layers.`, which an
    `AutoModel` tree lacks)."""
    if top_layers is None:
        return LORA_TARGETS
    layer_count = model.config.num_hidden_layers
    if not 1 <= top_layers <= layer_count:
        raise L2VError(f"lora-layers must be in [1, {layer_count}] for this model, got {top_layers}")
    layer_index = re.compile(r"(?:^|\.)layers\.(\d+)\.")
    return [
        name
        for name, _ in model.named_modules()
        if name.rsplit(".", 1)[-1] in LORA_TARGETS
        and (found := layer_index.search(name))
        and int(found.group(1)) >= layer_count - top_layers
    ]


def add_lora(model: nn.Module, settings: TrainSettings):
    """Freeze `model` and wrap it in a fresh LoRA adapter (seeded init); returns the PEFT model.

    LoRA goes on the base model (no LM head), so the saved adapter's keys match the `AutoModel` tree that
    `Encoder.from_pretrained` loads adapters onto. With `settings.lora_layers` only the last that many layers
    get LoRA: the frozen layers below then keep no autograd graph, so a step stores and back-propagates
    through the top layers only.
    """
    from peft import LoraConfig, get_peft_model

    model.requires_grad_(False)
    torch.manual_seed(settings.seed)
    config = LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=lora_targets(model, settings.lora_layers),
        bias="none",
    )
    with peft_deprecations_silenced():
        return get_peft_model(model, config)


def free_adapter_name(start: StartingPoint, stage: str) -> str:
    """`stage`, or `stage-2`, `stage-3`, ... when the starting model already has adapters of that name, so a
    stage can be trained again on top of a model that already had one (a second supervised stage on the
    shipped default; a distillation continued on new texts)."""
    taken = {directory.name for directory in start.adapter_dirs}
    name, number = stage, 1
    while name in taken:
        number += 1
        name = f"{stage}-{number}"
    return name


def prepare_output(out_dir: Path, start: StartingPoint, stage: str, resume: bool) -> bool:
    """Check that `out_dir` can take `stage`; returns False when a resumed run finds it already trained."""
    names = [d.name for d in start.adapter_dirs]
    if is_model_dir(out_dir) and (start.source_dir is None or out_dir.resolve() != start.source_dir):
        existing = ModelDirConfig.load(out_dir)
        if resume and stage in existing.adapters:
            return False
        if not resume:
            raise L2VError(f"{out_dir} already holds a trained model; choose a new --out (or --resume)")
    if stage in names:
        if resume and start.source_dir is not None and out_dir.resolve() == start.source_dir:
            return False
        raise L2VError(f"the model already has a {stage!r} adapter; train {stage} on a model without one")
    out_dir.mkdir(parents=True, exist_ok=True)
    return True


def record_stage(
    out_dir: Path, start: StartingPoint, stage: str, query_instruction: str | None, head: str | None = None
) -> None:
    """List the new adapter after the starting point's in `out_dir/l2v-model.json` (copying earlier
    adapters in when the output is a new directory), so `Encoder.from_pretrained(out_dir)` loads them all.
    `head`: the stage's new head file (else the starting point's head, if any, is kept)."""
    names = []
    for directory in start.adapter_dirs:
        if directory.resolve() != (out_dir / directory.name).resolve():
            shutil.copytree(directory, out_dir / directory.name, dirs_exist_ok=True)
        names.append(directory.name)
    ModelDirConfig(
        base_model=start.base_model,
        adapters=[*names, stage],
        pooling="mean",
        max_length=start.max_length,
        query_instruction=start.query_instruction if query_instruction is None else query_instruction or None,
        bidirectional=True,
        head=head or start.head,
        layers=start.layers,
    ).save(out_dir)


def versions() -> dict[str, str]:
    """Library versions a run depends on, recorded next to its settings."""
    found = {"python": platform.python_version()}
    for package in ("l2v-search", "torch", "transformers", "peft", "tokenizers"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found

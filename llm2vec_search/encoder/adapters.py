"""Trained model directories and PEFT LoRA adapters.

A trained model is a directory holding `l2v-model.json` (base model spec, adapters in order, pooling, max
length, query instruction, optional linear head after pooling, text format, layers kept) and one
sub-directory per adapter. Adapters are applied in order and each is merged before the next is loaded, as
LLM2Vec does for MNTP then SimCSE.
A description may also point at a model made by the official llm2vec library kept anywhere (text_format
"llm2vec"; see `published`): adapters may then be absolute paths, and base_model a chain of adapter folders.
"""

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from torch import nn

from ..errors import L2VError
from .layers import keep_layers

MODEL_CONFIG = "l2v-model.json"  # marks a trained l2v-search model directory (a ModelDirConfig)

MODEL_FORMAT = 3  # 2: text_format, base_name and doc_max_length; 3: layers
TEXT_FORMATS = ("l2v", "llm2vec")


@dataclass
class ModelDirConfig:
    base_model: str
    adapters: list[str] = field(default_factory=list)  # sub-directory names, applied in this order
    pooling: str = "mean"
    max_length: int = 512
    query_instruction: str | None = None
    bidirectional: bool = True
    # A linear layer applied to the pooled vector (a distilled model's projection to its teacher's space):
    # a safetensors file with `weight` (out, in) and `bias`, relative to the model directory.
    head: str | None = None
    # How texts become tokens: "l2v" (ours: instruction and text tokenized apart) or "llm2vec" (the official
    # library's, for its models: see `published`). Vectors of one do not match the other's.
    text_format: str = "l2v"
    # llm2vec only: the base's Hugging Face name, which chooses the chat wrapping (e.g.
    # "meta-llama/Meta-Llama-3-8B-Instruct"), and the length in tokens texts are cut to by words.
    base_name: str | None = None
    doc_max_length: int = 400
    # A pruned model: only the base's first `layers` transformer layers run (`apply_adapters` drops the rest).
    layers: int | None = None
    format: int = MODEL_FORMAT

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / MODEL_CONFIG).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> "ModelDirConfig":
        path = directory / MODEL_CONFIG
        try:
            data = json.loads(path.read_text())
            config = cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise L2VError(f"cannot read model config {path}: {exc}") from exc
        if config.format > MODEL_FORMAT:
            raise L2VError(
                f"{path} has format {config.format}; this l2v-search reads up to {MODEL_FORMAT}, upgrade it"
            )
        if config.text_format not in TEXT_FORMATS:
            raise L2VError(
                f"{path}: text_format {config.text_format!r} is not one of {', '.join(TEXT_FORMATS)}"
            )
        base = Path(config.base_model).expanduser()
        if not base.is_absolute() and (directory / base).exists():
            config.base_model = str((directory / base).resolve())
        return config


def load_head(path: Path) -> nn.Linear:
    """The linear head stored at `path` (fp32, no gradients)."""
    from safetensors.torch import load_file

    try:
        tensors = load_file(path)
        weight, bias = tensors["weight"], tensors.get("bias")
    except Exception as exc:  # missing file, truncated file, or no `weight` tensor
        raise L2VError(f"cannot read the model's head {path}: {exc}") from exc
    head = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    head.weight.data.copy_(weight)
    if bias is not None:
        head.bias.data.copy_(bias)
    return head.requires_grad_(False)


def save_head(head: nn.Linear, path: Path) -> None:
    from safetensors.torch import save_file

    tensors = {"weight": head.weight.detach().float().cpu().contiguous()}
    if head.bias is not None:
        tensors["bias"] = head.bias.detach().float().cpu().contiguous()
    save_file(tensors, str(path))


def is_model_dir(path: Path) -> bool:
    return (path / MODEL_CONFIG).is_file()


@contextmanager
def peft_deprecations_silenced() -> Iterator[None]:
    """PEFT reads `is_gradient_checkpointing`, which transformers 5 deprecates: noise for our users."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def apply_adapters(model: nn.Module, adapter_dirs: list[Path], layers: int | None = None) -> nn.Module:
    """Keep only `model`'s first `layers` layers (all when None), then load each PEFT adapter onto it and
    merge it into the weights before the next one. Pruning first gives the same weights as pruning after (a
    LoRA delta changes only its own layer) and merges nothing that is then dropped; an adapter trained on the
    pruned model has weights for the kept layers only, and PEFT would warn of missing keys on the full one."""
    from peft import PeftModel

    if layers:
        keep_layers(model, layers)
    for directory in adapter_dirs:
        if not (directory / "adapter_config.json").is_file():
            raise L2VError(f"not a PEFT adapter directory (no adapter_config.json): {directory}")
        with peft_deprecations_silenced():
            model = PeftModel.from_pretrained(model, str(directory)).merge_and_unload()
    return model

"""Models made by the official `llm2vec` library (McGill-NLP/LLM2Vec-… and people's own), loaded as it does.

Such a model is a chain of folders: the supervised adapter names the MNTP folder as its base
(`adapter_config.json`'s `base_model_name_or_path`), the MNTP folder (config.json, tokenizer and a LoRA
adapter, no weights) names the original base model. Each link is a folder or a Hugging Face name found in the
local hub cache, offline, as `local_files_only` finds it. The adapters are merged in order onto the base.

The text handling is llm2vec 0.2.3's (`LLM2Vec.encode`): a query is `instruction.strip() + " " + text`
tokenized as one string, and only the text's tokens are pooled; the library marks where the text starts with
a separator, removes it, tokenizes the part after it alone and pools that many tokens from the end. Texts
longer than `doc_max_length` tokens are cut by words first. For some chat models every text (documents too)
is wrapped in the base's chat template, chosen by the base's Hugging Face name, and the template's closing
tokens are pooled with the text.
"""

import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import L2VError
from .adapters import ModelDirConfig

ADAPTER_CONFIG = "adapter_config.json"
LLM2VEC_CONFIG = "llm2vec_config.json"
SEPARATOR = "!@#$%^&*()"  # llm2vec's marker between instruction and text
MAX_CHAIN = 8  # adapters on adapters; more is a loop
HUB_NAME = re.compile(r"[\w.-]+/[\w.-]+")
# llm2vec's `prepare_for_tokenization`: (before, after) the stripped text, by the base's Hugging Face name.
CHAT_WRAPS: dict[str, tuple[str, str]] = {
    "meta-llama/Meta-Llama-3-8B-Instruct": ("<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>"),
    "mistralai/Mistral-7B-Instruct-v0.2": ("[INST] ", " [/INST]"),
    "meta-llama/Llama-2-7b-chat-hf": ("[INST] ", " [/INST]"),
    "google/gemma-2-9b-it": ("<bos><start_of_turn>user\n", "<end_of_turn>"),
    "Qwen/Qwen2-1.5B-Instruct": ("<|im_start|>user\n", "<|im_end|>"),
    "Qwen/Qwen2-7B-Instruct": ("<|im_start|>user\n", "<|im_end|>"),
}
# The query instruction the supervised McGill-NLP models were trained with for retrieval (MS MARCO in
# llm2vec's dataset/E5Data.py, which joins it to the query as f"{instruction}; "); `query` uses it.
RETRIEVAL_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query;"
# llm2vec pooling modes this encoder reproduces (ours have the same names)
POOLINGS = ("mean", "weighted_mean", "last_token")


def hub_cache() -> Path:
    """Where Hugging Face keeps downloads: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub
    (absolute: the folders found there are written into model descriptions and fingerprints)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser().absolute()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser().absolute() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).absolute() / "huggingface" / "hub"


def hub_snapshot(name: str) -> Path | None:
    """The folder the hub cache holds for `name` at `refs/main`, or None."""
    repo = hub_cache() / ("models--" + name.replace("/", "--"))
    try:
        snapshot = repo / "snapshots" / (repo / "refs" / "main").read_text().strip()
    except OSError:
        return None
    return snapshot if snapshot.is_dir() else None


def is_published(spec: str) -> bool:
    """Whether `spec` names an llm2vec model: a folder with a LoRA adapter, or a hub name (not a path)."""
    path = Path(spec).expanduser()
    if path.exists():
        return (path / ADAPTER_CONFIG).is_file()
    return HUB_NAME.fullmatch(spec) is not None and not spec.endswith(".gguf")


def locate(name: str, named_by: str) -> Path:
    """The folder `name` stands for (absolute): itself, or its snapshot in the hub cache."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path.absolute()
    snapshot = hub_snapshot(name) if HUB_NAME.fullmatch(name) else None
    if snapshot is None:
        raise L2VError(
            f"{name!r} ({named_by}) is neither a folder nor in the Hugging Face cache {hub_cache()}; "
            f"download it there (huggingface-cli download {name}) or set HF_HUB_CACHE/HF_HOME"
        )
    return snapshot


@dataclass
class Chain:
    """Base weights and the adapters to merge onto them, in order; `names` are the Hugging Face names met on
    the way (adapters' bases and configs' `_name_or_path`), which choose the chat wrapping."""

    base: Path
    adapters: list[Path] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    @property
    def base_name(self) -> str | None:
        return next((name for name in self.names if name in CHAT_WRAPS), None)


def resolve_chain(spec: str) -> Chain:
    """Follow `spec`'s adapters down to the base weights; a missing link is an L2VError naming it."""
    folder = locate(spec, "the model asked for")
    chain = Chain(base=folder)
    while (folder / ADAPTER_CONFIG).is_file():
        if len(chain.adapters) >= MAX_CHAIN or folder in chain.adapters:
            raise L2VError(f"the adapters from {spec!r} name each other in a loop (at {folder})")
        chain.adapters.insert(0, folder)
        chain.names += _config_name(folder)
        config_path = folder / ADAPTER_CONFIG
        try:
            base = json.loads(config_path.read_text())["base_model_name_or_path"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise L2VError(f"cannot read the adapter's base model from {config_path}: {exc!r}") from exc
        chain.names.append(base)
        folder = locate(base, f"the base model named in {config_path}")
    if not (folder / "config.json").is_file():
        raise L2VError(f"{folder} has neither config.json (base weights) nor {ADAPTER_CONFIG} (an adapter)")
    chain.base = folder
    chain.names += _config_name(folder)
    return chain


def _config_name(folder: Path) -> list[str]:
    """The `_name_or_path` a folder's config.json records (llm2vec wraps texts by it), if any."""
    try:
        name = json.loads((folder / "config.json").read_text()).get("_name_or_path")
    except (OSError, ValueError, AttributeError):
        return []
    return [name] if isinstance(name, str) and name else []


def published_config(spec: str) -> ModelDirConfig:
    """The description of an llm2vec model named by hub name or folder: its chain, and the settings of its
    `llm2vec_config.json` (pooling_mode, max_length, doc_max_length, skip_instruction) where it has one."""
    defaults = ModelDirConfig(base_model=spec, text_format="llm2vec", query_instruction=RETRIEVAL_INSTRUCTION)
    path = locate(spec, "the model asked for") / LLM2VEC_CONFIG
    if not path.is_file():
        return with_chain(defaults, None)
    try:
        settings = json.loads(path.read_text())
        config = replace(
            defaults,
            pooling=str(settings.get("pooling_mode", defaults.pooling)),
            max_length=int(settings.get("max_length", defaults.max_length)),
            doc_max_length=int(settings.get("doc_max_length", defaults.doc_max_length)),
        )
    except (OSError, ValueError, TypeError, AttributeError) as exc:  # unreadable, or not numbers in an object
        raise L2VError(f"cannot read {path}: {exc}") from exc
    if config.pooling not in POOLINGS:
        supported = ", ".join(POOLINGS)
        raise L2VError(f"{path}: pooling_mode {config.pooling!r} is not supported; supported: {supported}")
    if settings.get("skip_instruction", True) is not True:
        raise L2VError(f"{path}: skip_instruction false (pooling the instruction too) is not supported")
    return with_chain(config, None)


def with_chain(config: ModelDirConfig, model_dir: Path | None) -> ModelDirConfig:
    """`config` with its base_model followed down to the base weights: the chain's adapters come first, then
    the description's own (made absolute), and base_name from the chain unless the description gives one."""
    chain = resolve_chain(config.base_model)
    own = [str(model_dir / name) if model_dir else name for name in config.adapters]
    return replace(
        config,
        base_model=str(chain.base),
        adapters=[*map(str, chain.adapters), *own],
        base_name=config.base_name or chain.base_name,
    )


def text_handling(config: ModelDirConfig) -> "LLM2VecText | None":
    """llm2vec's text handling for a model in that format, None for ours."""
    if config.text_format != "llm2vec":
        return None
    return LLM2VecText(config.base_name, config.doc_max_length)


@dataclass(frozen=True)
class LLM2VecText:
    """llm2vec 0.2.3's tokenization (`_convert_to_str`, `prepare_for_tokenization`, `tokenize`) and the
    positions its embed mask pools (`_skip_instruction`)."""

    base_name: str | None
    doc_max_length: int

    @property
    def identity(self) -> list:
        """What of this changes vectors, for fingerprints."""
        return ["llm2vec", self.base_name if self.base_name in CHAT_WRAPS else None, self.doc_max_length]

    def tokenize(
        self, tokenizer, max_length: int, texts: list[str], instruction: str | None, last_token: bool = False
    ) -> list[tuple[list[int], list[int], bool]]:
        """(token ids, positions to pool, truncated) per text."""

        def ids(batch: list[str], special: bool) -> list[list[int]]:
            return tokenizer(batch, add_special_tokens=special, truncation=True, max_length=max_length)[
                "input_ids"
            ]

        def cut(text: str, length: int) -> str:
            while length > self.doc_max_length:  # llm2vec cuts by words, in proportion
                words = text.split()
                text = " ".join(words[: int(len(words) * self.doc_max_length / length)])
                length = len(ids([text], special=False)[0])
            return text

        kept = [cut(text, len(t)) for text, t in zip(texts, ids(texts, special=False), strict=True)]
        joined = [f"{instruction.strip()} {SEPARATOR}{t}" if instruction else f"{SEPARATOR}{t}" for t in kept]
        wrap = CHAT_WRAPS.get(self.base_name or "")
        if wrap:
            joined = [wrap[0] + text.strip() + wrap[1] for text in joined]
        parts = [text.split(SEPARATOR) for text in joined]
        full = ids(["".join(p) for p in parts], special=True)
        tails = ids([p[1] if len(p) > 1 else "" for p in parts], special=False)
        result = []
        for row, tail, text, kept_text in zip(full, tails, texts, kept, strict=True):
            # llm2vec pools the last len(tail) positions; with none, the whole row
            start = max(0, len(row) - len(tail)) if tail else 0
            positions = [len(row) - 1] if last_token else list(range(start, len(row)))
            result.append((row, positions, kept_text != text or len(row) >= max_length))
        return result


@dataclass
class CachedModel:
    """An llm2vec model found in the hub cache, for `l2v-search models`."""

    name: str
    complete: bool
    detail: str


def cached_models() -> list[CachedModel]:
    """The hub cache's models that carry a LoRA adapter or an llm2vec_config.json, each with whether its whole
    chain is on this machine."""
    rows = []
    for repo in sorted(hub_cache().glob("models--*")):
        name = repo.name.removeprefix("models--").replace("--", "/", 1)
        snapshot = hub_snapshot(name)
        if snapshot is None or not any((snapshot / f).is_file() for f in (ADAPTER_CONFIG, LLM2VEC_CONFIG)):
            continue
        try:
            chain = resolve_chain(name)
        except L2VError as exc:
            rows.append(CachedModel(name, False, str(exc)))
            continue
        base = next((n for n in reversed(chain.names) if HUB_NAME.fullmatch(n)), str(chain.base))
        rows.append(CachedModel(name, True, f"{len(chain.adapters)} adapter(s) on {base}"))
    return rows

"""`Encoder`: text in, L2-normalized float32 vectors out, from a decoder LLM with bidirectional attention."""

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import L2VError
from .adapters import ModelDirConfig, is_model_dir, load_head
from .bidirectional import attention_masks, set_bidirectional
from .device import choose_dtype, pick_device
from .models import DEFAULT_BASE, model_family, resolve_weights, weights_identity, weights_source
from .pooling import POOLING_MODES, pool
from .published import LLM2VecText, is_published, published_config, text_handling, with_chain
from .ready import load_ready
from .recent import QUERY_CACHE_SIZE, RecentVectors
from .tokens import Tokenized, assemble, instruction_prompt, padded_batch, validate_texts

log = logging.getLogger(__name__)

# A trained model directory shipped inside the package; `model="default"` uses it when present.
SHIPPED_DEFAULT = Path(__file__).resolve().parent.parent / "models" / "default"
DEFAULT_MAX_LENGTH = 512
# Padded tokens per forward pass when `encode` is not told: on a CPU a batch whose activations stay in its
# caches runs 1.3-1.9x faster than one 8x larger (benchmarks/results/encode_throughput.txt); a GPU wants more.
CPU_BATCH_TOKENS = 1024
GPU_BATCH_TOKENS = 8192


@dataclass
class EncodeStats:
    """What the last `encode` call did; `truncated` counts texts cut at `max_length`."""

    texts: int = 0
    tokens: int = 0
    truncated: int = 0
    batches: int = 0


def model_config(spec: str) -> tuple[ModelDirConfig, Path | None]:
    """A spec's settings and, for a trained model directory (the shipped default is one), that directory."""
    model_dir: Path | None = None
    if spec == "default":
        if not is_model_dir(SHIPPED_DEFAULT):
            return ModelDirConfig(base_model=DEFAULT_BASE), None
        model_dir = SHIPPED_DEFAULT
    elif is_model_dir(Path(spec).expanduser()):
        model_dir = Path(spec).expanduser()
    if model_dir is None:
        # a hub name, or a folder holding an adapter, as the llm2vec library takes them
        if is_published(spec):
            return published_config(spec), None
        return ModelDirConfig(base_model=spec), None
    config = ModelDirConfig.load(model_dir)
    if config.text_format == "llm2vec":
        config = with_chain(config, model_dir)
    return config, model_dir


def adapter_paths(config: ModelDirConfig, model_dir: Path | None) -> list[Path]:
    """The description's adapters as paths: relative to its directory, or as given (absolute)."""
    return [model_dir / name if model_dir else Path(name) for name in config.adapters]


def model_fingerprint(spec: str | Path = "default") -> str:
    """The fingerprint `Encoder.from_pretrained(spec)` gives, without loading or converting any weights (so
    `doctor` can tell in a moment whether an index still matches its model)."""
    config, model_dir = model_config(str(spec))
    identity = weights_identity(weights_source(config.base_model))
    head = model_dir / config.head if model_dir and config.head else None
    text = text_handling(config)
    return _fingerprint(
        identity,
        adapter_paths(config, model_dir),
        config.pooling,
        config.bidirectional,
        head,
        text,
        config.layers,
    )


class Encoder:
    """Embeds texts with a (bidirectional, optionally LoRA-trained) decoder LLM.

    Build one with `Encoder.from_pretrained(...)`; call `encode(texts)` for documents and
    `encode(texts, instruction=...)` (or `encode_queries`) for queries. The instruction is attended to but not
    pooled, so a query's vector describes the query, steered by the instruction.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        *,
        pooling: str = "mean",
        max_length: int = DEFAULT_MAX_LENGTH,
        query_instruction: str | None = None,
        name: str = "custom",
        fingerprint: str = "",
        query_cache_size: int = QUERY_CACHE_SIZE,
        head: nn.Linear | None = None,
        text: LLM2VecText | None = None,
    ) -> None:
        if pooling not in POOLING_MODES:
            raise L2VError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLING_MODES)}")
        if max_length < 8:
            raise L2VError(f"max_length must be at least 8 tokens, got {max_length}")
        self.model = model.eval()
        self.head = head.to(self.device).eval() if head is not None else None
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_length = max_length
        self.query_instruction = query_instruction
        self.name = name
        self.fingerprint = fingerprint or "unknown"
        self.text = text  # None: our own text handling; else the official llm2vec library's
        self.last_stats = EncodeStats()
        self._prefix, self._suffix = _special_tokens_around_text(tokenizer)
        if pooling == "last_token":
            eos = tokenizer.eos_token_id
            if eos is None:
                raise L2VError("last_token pooling needs a tokenizer with an EOS token")
            if not self._suffix or self._suffix[-1] != eos:
                self._suffix = [*self._suffix, eos]
        if text is not None and pooling == "bos":
            raise L2VError("bos pooling is not available with the llm2vec library's text handling")
        if pooling == "bos" and not self._prefix:
            raise L2VError("bos pooling needs a tokenizer that adds a BOS token")
        self._instruction_ids: dict[str, list[int]] = {}
        self._recent = RecentVectors(query_cache_size)

    @classmethod
    def from_pretrained(
        cls,
        model: str | Path = "default",
        adapters: Sequence[str | Path] | None = None,
        pooling: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        max_length: int | None = None,
        bidirectional: bool | None = None,
        query_instruction: str | None = None,
        query_cache_size: int = QUERY_CACHE_SIZE,
        layers: int | None = None,
    ) -> "Encoder":
        """Load a model spec (see `l2v-search models`), apply adapters, and switch on bidirectional attention.

        Arguments left as None take the trained model directory's settings, else mean pooling, 512 tokens,
        bidirectional attention, no query instruction and all layers (`layers`: keep only the first N).
        `query_cache_size` as in `Encoder`. The weights are loaded and the adapters merged in the dtype the
        model runs in (bf16 on most GPUs), on its device, so a big base never needs a float32 copy, nor a copy
        in the machine's memory.
        """
        spec = str(model)
        config, model_dir = model_config(spec)
        adapter_dirs = adapter_paths(config, model_dir) + [Path(a).expanduser() for a in adapters or []]

        weights_dir, identity = resolve_weights(config.base_model)
        family = model_family(weights_dir / "config.json")
        torch_device, torch_dtype = pick_device(device, dtype, family)
        kept_layers = layers or config.layers
        network, tokenizer = load_ready(
            weights_dir, identity, adapter_dirs, torch_dtype, torch_device, kept_layers
        )
        use_bidirectional = config.bidirectional if bidirectional is None else bidirectional
        set_bidirectional(network, use_bidirectional)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        final_pooling = pooling or config.pooling
        head_path = model_dir / config.head if model_dir and config.head else None
        text = text_handling(config)
        fingerprint = _fingerprint(
            identity, adapter_dirs, final_pooling, use_bidirectional, head_path, text, kept_layers
        )
        name = str(model_dir) if model_dir and model_dir != SHIPPED_DEFAULT else spec
        return cls(
            network,
            tokenizer,
            pooling=final_pooling,
            max_length=max_length or config.max_length,
            query_instruction=query_instruction
            if query_instruction is not None
            else config.query_instruction,
            name=name,
            fingerprint=fingerprint,
            query_cache_size=query_cache_size,
            head=load_head(head_path) if head_path else None,
            text=text,
        )

    @property
    def text_tokens(self) -> int:
        """The most tokens of one text that are embedded (llm2vec's models first cut texts by words)."""
        return min(self.max_length, self.text.doc_max_length) if self.text else self.max_length

    @property
    def dim(self) -> int:
        if self.head is not None:
            return int(self.head.out_features)
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def tokenize(self, texts: Sequence[str], instruction: str | None = None) -> list[Tokenized]:
        """Token ids per text ([specials] + instruction + text + [specials]) and the positions to pool."""
        validate_texts(texts)
        if self.text is not None:
            rows = self.text.tokenize(
                self.tokenizer, self.max_length, list(texts), instruction, self.pooling == "last_token"
            )
            return [Tokenized(ids, positions, truncated) for ids, positions, truncated in rows]
        instruction_ids = self._instruction_tokens(instruction)
        encoded = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [
            assemble(ids, instruction_ids, self._prefix, self._suffix, self.pooling, self.max_length)
            for ids in encoded
        ]

    def _instruction_tokens(self, instruction: str | None) -> list[int]:
        if not instruction or not instruction.strip():
            return []
        if instruction not in self._instruction_ids:
            prompt = instruction_prompt(instruction)
            self._instruction_ids[instruction] = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return self._instruction_ids[instruction]

    def encode_queries(self, texts: Sequence[str], **kwargs) -> np.ndarray:
        """`encode` with the model's query instruction (none for an untrained base model), recent queries
        served from the cache."""
        return self.encode(texts, instruction=self.query_instruction, cache=True, **kwargs)

    @torch.inference_mode()
    def encode(
        self,
        texts: Sequence[str] | str,
        instruction: str | None = None,
        batch_size: int = 64,
        normalize: bool = True,
        progress: Callable[[int, int], None] | None = None,
        max_batch_tokens: int | None = None,
        cache: bool = False,
    ) -> np.ndarray:
        """Embed `texts` into a (len(texts), dim) float32 array, in input order; `progress` gets (texts
        embedded, texts) after each batch.

        Texts are sorted by length and batched by a padded-token budget (`max_batch_tokens`, at most
        `batch_size` texts; by default `CPU_BATCH_TOKENS` or `GPU_BATCH_TOKENS`), which wastes little compute
        on padding. Texts longer than `max_length` tokens are truncated; the count is in
        `self.last_stats.truncated` and logged as a warning. With `cache`, texts
        met in the last `query_cache_size` cached texts are not embedded again (queries repeat, in a REPL
        session and across a server's clients; `last_stats` then counts only what was embedded).
        """
        if isinstance(texts, str):
            texts = [texts]
        if cache and texts:
            return self._encode_cached(texts, instruction, normalize, batch_size, max_batch_tokens)
        self.last_stats = stats = EncodeStats(texts=len(texts))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        items = self.tokenize(texts, instruction)
        stats.truncated = sum(item.truncated for item in items)
        stats.tokens = sum(len(item.ids) for item in items)
        if stats.truncated:
            log.warning(
                "%d of %d texts were truncated to %d tokens", stats.truncated, len(texts), self.text_tokens
            )
        if max_batch_tokens is None:
            max_batch_tokens = CPU_BATCH_TOKENS if self.device.type == "cpu" else GPU_BATCH_TOKENS
        order = sorted(range(len(items)), key=lambda i: -len(items[i].ids))
        output = np.zeros((len(items), self.dim), dtype=np.float32)
        done = 0
        for batch in _token_budget_batches(order, items, batch_size, max_batch_tokens):
            vectors = self.forward([items[i] for i in batch])
            if normalize:
                vectors = torch.nn.functional.normalize(vectors, dim=-1)
            output[batch] = vectors.cpu().numpy()
            stats.batches += 1
            done += len(batch)
            if progress:
                progress(done, len(items))
        return output

    def _encode_cached(
        self,
        texts: Sequence[str],
        instruction: str | None,
        normalize: bool,
        batch_size: int,
        max_tokens: int | None,
    ) -> np.ndarray:
        validate_texts(texts)  # before hashing: a non-string must be refused as `encode` refuses it
        self.last_stats = EncodeStats()

        def embed(missing: list) -> np.ndarray:
            return self.encode(
                [text for _, _, text in missing], instruction, batch_size, normalize, None, max_tokens
            )

        return self._recent.get([(instruction, normalize, text) for text in texts], embed)

    def forward(self, batch: list[Tokenized]) -> torch.Tensor:
        """Right-pad a batch, run the model and pool; returns float32 (batch, dim), with gradients when the
        caller allows them (training runs its batches through here)."""
        padded = padded_batch(batch, self.tokenizer.pad_token_id)
        input_ids, attention, pool_mask = (torch.from_numpy(array) for array in padded)
        device = self.device
        masks = attention_masks(self.model, attention.to(device))
        hidden = self.model(input_ids=input_ids.to(device), attention_mask=masks).last_hidden_state
        return self.project(pool(hidden.float(), pool_mask.to(device), self.pooling))

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        """The pooled vectors through the model's head, when it has one (a distilled model's projection)."""
        return pooled if self.head is None else self.head(pooled)


def _token_budget_batches(order: list[int], items: list[Tokenized], batch_size: int, max_tokens: int):
    """Group indices (sorted longest first) so that each padded batch holds at most `max_tokens` tokens."""
    batch: list[int] = []
    for index in order:
        width = len(items[batch[0]].ids) if batch else len(items[index].ids)
        if batch and (len(batch) + 1 > batch_size or (len(batch) + 1) * width > max_tokens):
            yield batch
            batch = []
        batch.append(index)
    if batch:
        yield batch


def _special_tokens_around_text(tokenizer) -> tuple[list[int], list[int]]:
    """The special token ids the tokenizer puts before and after a text (e.g. [BOS], [])."""
    plain = tokenizer("hello world", add_special_tokens=False)["input_ids"]
    full = tokenizer("hello world")["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start], full[start + len(plain) :]
    return [], []


def _fingerprint(
    identity: str,
    adapter_dirs: list[Path],
    pooling: str,
    bidirectional: bool,
    head: Path | None = None,
    text: LLM2VecText | None = None,
    layers: int | None = None,
) -> str:
    """A short hash of all that changes document vectors: weights, adapters, pooling, attention, head, the
    text handling and the layers kept (ours and all layers add nothing, so that indexes made before either
    existed keep their fingerprint)."""
    parts: list = [identity, pooling, bidirectional] + ([text.identity] if text else [])
    parts += [["layers", layers]] if layers else []
    digest = hashlib.sha256(json.dumps(parts).encode())
    for directory in adapter_dirs:
        for path in sorted(directory.glob("adapter_model.*")):
            digest.update(path.read_bytes())
    if head is not None:
        try:
            digest.update(b"head" + head.read_bytes())
        except OSError as exc:
            raise L2VError(f"cannot read the model's head {head}: {exc}") from exc
    return digest.hexdigest()[:16]


__all__ = ["EncodeStats", "Encoder", "choose_dtype", "pick_device"]

"""Embedding queries without PyTorch: the model's network in ONNX Runtime (issue 23).

A one-shot search used to spend most of its time importing torch and transformers and loading the full model;
a warm query spent it in PyTorch's eager execution of ~2,000 small operations. The query model is the same
network as one ONNX graph (float32 weights, or 8-bit ones where that is faster), an embedding table read by
memory map and a SentencePiece form of the tokenizer: it loads in under a second and embeds a query 2-2.5x
faster than PyTorch on 2 cores (docs/performance.md). `onnx_export.build_query_model` writes the entry
(`query-<fingerprint>-<max length>/` in the model cache) from a loaded `Encoder`; this module only reads it,
with numpy, `sentencepiece` (or `tokenizers`) and `onnxruntime`.

Documents are always embedded by `Encoder` in float32; only queries take this path, and only where the build
measured it faster than float32 PyTorch on this machine with vectors within `MIN_COSINE` of PyTorch's.
"""

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..paths import cache_dir
from .recent import QUERY_CACHE_SIZE, RecentVectors
from .tokens import Tokenized, assemble, padded_batch, validate_texts

if TYPE_CHECKING:
    from .encoder import Encoder

log = logging.getLogger(__name__)

QUERY_FORMAT = 1  # bump when the entry's layout or its graph changes
QUERY_MARKER = "l2v-query.json"
# The graphs a build makes; it keeps the one that was fastest here (weights in float32, or 8-bit in blocks of
# 32 input channels with 8-bit arithmetic), if either beat float32 PyTorch with vectors that agree.
GRAPHS = {"float32": "query-float32.onnx", "int8": "query-int8.onnx"}
WEIGHTS_SUFFIX = ".data"  # a graph's weights, beside it
EMBEDDINGS_FILE = "embeddings.npy"
TOKENIZER_FILE = "tokenizer.json"
SPM_FILE = "tokenizer.model"
MIN_COSINE = 0.995  # the least agreement with float32 PyTorch for a query vector that may search its index


def import_onnxruntime():
    """onnxruntime, with its usage telemetry off (unless the user set the variable): since 1.29 its Linux
    and macOS builds report to Microsoft and write a device identifier by default, and this tool runs
    offline. The variable is read once, when the runtime starts, so it is set before the first import."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime

    return onnxruntime


def query_entry(fingerprint: str, max_length: int) -> Path:
    return cache_dir() / f"query-{fingerprint}-{max_length}"


def query_model_usable(encoder: "Encoder") -> bool:
    """Whether the ONNX path gives `encoder`'s vectors: our own text handling, bidirectional attention, and no
    text longer than a sliding window (the exported graph's masks are padding only)."""
    config = encoder.model.config
    window = getattr(config, "sliding_window", None)
    return (
        encoder.text is None
        and not getattr(config, "is_causal", True)
        and (window is None or encoder.max_length <= window)
        and encoder.device.type == "cpu"
    )


def read_manifest(fingerprint: str, max_length: int) -> dict[str, Any] | None:
    """The manifest of this model's query entry when the entry is built, readable and of the current format;
    else None (an entry of an older format is built again)."""
    try:
        manifest = json.loads((query_entry(fingerprint, max_length) / QUERY_MARKER).read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("format") != QUERY_FORMAT or manifest.get("fingerprint") != fingerprint:
        return None
    return manifest


def find_query_encoder(
    fingerprint: str, max_length: int, query_cache_size: int = QUERY_CACHE_SIZE
) -> "QueryEncoder | None":
    """The ONNX query encoder for this model, if its entry is built, checked and faster here; else None."""
    manifest = read_manifest(fingerprint, max_length)
    if manifest is None or not manifest.get("graph"):  # none, or the build found PyTorch faster here
        return None
    entry = query_entry(fingerprint, max_length)
    try:
        return QueryEncoder(entry, manifest, manifest["graph"], query_cache_size)
    except Exception as exc:  # onnxruntime missing, or a damaged entry: the float32 path still answers
        log.warning("cannot use the query model in %s (%s); using the full model", entry, exc)
        return None


def describe_query_path(fingerprint: str, max_length: int) -> str:
    """How this model's queries are embedded here, for `doctor`: which graph and its measured speed-up."""
    manifest = read_manifest(fingerprint, max_length)
    if manifest is None:
        return "full model (no query model built yet: the next `index` run that embeds builds it)"
    checks, graph = manifest.get("checks", {}), manifest.get("graph")
    torch_ms = checks.get("torch", {}).get("ms", 0.0)
    if not graph:
        return f"full model (its query model was not faster here: PyTorch {torch_ms:.0f} ms a query)"
    weights = next((name for name, file in GRAPHS.items() if file == graph), graph)
    return (
        f"query model, {weights} weights ({checks[weights]['ms']:.0f} ms a query; PyTorch {torch_ms:.0f} ms)"
    )


class QueryTokenizer:
    """Token ids of texts, without special tokens: through the SentencePiece model when the build found it
    exact (`spm_tokenizer`; it loads in a tenth of the time), else through `tokenizers`, which is also read
    (then, lazily) for a text that spells out a token SentencePiece cannot match."""

    def __init__(self, entry: Path, manifest: dict[str, Any]) -> None:
        self._entry = entry
        self._unmatched: list[str] = manifest.get("unmatched", [])
        self._fast = None
        if manifest.get("tokenizer") == "sentencepiece":
            from sentencepiece import SentencePieceProcessor

            self._fast = SentencePieceProcessor(model_file=str(entry / SPM_FILE))
        self._full = None

    def ids(self, texts: list[str]) -> list[list[int]]:
        if self._fast is not None and not any(token in text for text in texts for token in self._unmatched):
            return self._fast.encode(texts)
        if self._full is None:
            from tokenizers import Tokenizer

            self._full = Tokenizer.from_file(str(self._entry / TOKENIZER_FILE))
        return [encoding.ids for encoding in self._full.encode_batch(texts, add_special_tokens=False)]


class QueryEncoder:
    """`Encoder.encode_queries` for one model, read from its query entry; the same tokens, instruction and
    pooling, vectors within `MIN_COSINE` of the float32 ones."""

    def __init__(
        self, entry: Path, manifest: dict[str, Any], graph: str, query_cache_size: int = QUERY_CACHE_SIZE
    ) -> None:
        onnxruntime = import_onnxruntime()
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL  # done at build
        options.intra_op_num_threads = len(os.sched_getaffinity(0))
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(entry / graph), options, providers=["CPUExecutionProvider"]
        )
        self.embeddings = np.load(entry / EMBEDDINGS_FILE, mmap_mode="r")
        self.tokenizer = QueryTokenizer(entry, manifest)
        self.graph = graph
        self.fingerprint: str = manifest["fingerprint"]
        self.name: str = manifest["name"]
        self.dim: int = manifest["dim"]
        self.pooling: str = manifest["pooling"]
        self.max_length: int = manifest["max_length"]
        self.query_instruction: str | None = manifest["query_instruction"]
        self._prefix: list[int] = manifest["prefix"]
        self._suffix: list[int] = manifest["suffix"]
        self._instruction_ids: list[int] = manifest["instruction_ids"]
        self._recent = RecentVectors(query_cache_size)

    def tokenize(self, texts: Sequence[str]) -> list[Tokenized]:
        validate_texts(texts)
        return [
            assemble(ids, self._instruction_ids, self._prefix, self._suffix, self.pooling, self.max_length)
            for ids in self.tokenizer.ids(list(texts))
        ]

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors of the texts as queries; recent ones from memory."""
        validate_texts(texts)
        return self._recent.get(list(texts), self._embed)

    def _embed(self, texts: list[str]) -> np.ndarray:
        """The texts as queries through the graph, in one right-padded batch."""
        ids, attention, pool_mask = padded_batch(self.tokenize(texts), pad_id=0)  # padding is masked out
        embedded = self.embeddings[ids].astype(np.float32)
        feeds = {"inputs_embeds": embedded, "attention_mask": attention, "pool_mask": pool_mask}
        vectors = self.session.run(None, feeds)[0]
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

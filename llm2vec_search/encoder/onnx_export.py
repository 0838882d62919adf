"""Build the torch-free query path (`onnx_query`) from a loaded `Encoder`: once per model and machine.

The network is exported to ONNX from the embeddings on (TorchScript tracing) as a float32 graph and as one
whose matrix multiplications hold 8-bit weights in blocks of 32 (ONNX Runtime's `MatMulNBits`, activations
quantized per block too, so the products run in integer arithmetic), each with ONNX Runtime's portable graph
optimizations applied once; the scaled embedding table is stored as float16 rows read by memory map, and the
tokenizer also as a SentencePiece model where that is exact. Then the same sample queries go through PyTorch
and each graph: the entry records the lowest cosine and each path's median time per query here, and keeps
the fastest graph that agrees, if it beat PyTorch (issue 23).
"""

import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .encoder import Encoder
from .onnx_query import (
    EMBEDDINGS_FILE,
    GRAPHS,
    MIN_COSINE,
    QUERY_FORMAT,
    QUERY_MARKER,
    SPM_FILE,
    TOKENIZER_FILE,
    WEIGHTS_SUFFIX,
    QueryEncoder,
    QueryTokenizer,
    import_onnxruntime,
    query_entry,
    query_model_usable,
    read_manifest,
)
from .pooling import pool
from .spm_tokenizer import spm_model

log = logging.getLogger(__name__)

WEIGHT_BITS = 8
BLOCK_SIZE = 32  # input channels sharing one scale
# MatMulNBits' accuracy level 4: activations quantized to 8 bits per block too, so the products run in integer
# arithmetic; levels 0-1 (float32 arithmetic) were 3-5x slower than float32 weights on an AVX2 machine.
INT8_ARITHMETIC = 4
# Queries the build embeds both ways to compare vectors and time them; a few lengths, like real queries.
SAMPLE_QUERIES = (
    "why does the sea level rise and fall twice a day",
    "how to configure the logging level",
    "what causes inflation",
    "side effects of long-term aspirin use in older adults with a history of stomach ulcers",
    "python list comprehension with a condition",
    "who wrote the declaration of independence and when was it signed",
    "database migration failed",
    "best way to store embeddings for semantic search over a folder of markdown notes",
)
TIMING_ROUNDS = 3
# Texts on which a SentencePiece form of the tokenizer must give the original's ids before it is used.
TOKENIZER_CHECKS = (
    "  two  spaces,\ta tab\n\nand newlines\r\n",
    "Ünïcödé, émojis 🙂🚀, 中文文本, русский, العربية, हिन्दी",
    "def f(x):\n    return {'k': x ** 2}  # code",
    "<start_of_turn>user <bos>a<eos> <pad> <mask> </s> <unk>",
    "CamelCaseWords, snake_case_words, URLs like https://example.com/a?b=c&d=e",
    "numbers 3.14159 1,000,000 2026-12-03 0x1F",
    " leading and trailing spaces ",
    "a\u00a0non-breaking\u2009thin space and a zero\u200bwidth one",
)


def padding_masks(config, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each layer kind's mask for a right-padded bidirectional batch, in plain tensor ops that trace into a
    graph (transformers builds masks with vmapped functions, which do not). Exact while no text is longer
    than the sliding window: then every real token sees every other."""
    width = attention_mask.shape[1]
    keys = attention_mask[:, None, None, :].bool().expand(-1, 1, width, -1)
    return dict.fromkeys(sorted(set(getattr(config, "layer_types", None) or ["full_attention"])), keys)


class QueryGraph(nn.Module):
    """Scaled token embeddings + attention mask + pool mask → the encoder's (unnormalized) vectors."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder
        # registered, so that tracing takes their weights as the graph's initializers
        self.model = encoder.model
        self.head = encoder.head

    def forward(
        self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, pool_mask: torch.Tensor
    ) -> torch.Tensor:
        masks = padding_masks(self.model.config, attention_mask)
        hidden = self.model(
            inputs_embeds=inputs_embeds, attention_mask=masks, use_cache=False
        ).last_hidden_state
        return self.encoder.project(pool(hidden.float(), pool_mask, self.encoder.pooling))


def scaled_embeddings(encoder: Encoder) -> np.ndarray:
    """The input embedding table as the network's first layer sees it (Gemma scales it by √hidden)."""
    embedding = encoder.model.get_input_embeddings()
    scale = getattr(embedding, "embed_scale", 1.0)
    with torch.no_grad():
        return (embedding.weight.float() * torch.as_tensor(scale, dtype=torch.float32)).numpy()


def export_graph(encoder: Encoder, path: Path) -> None:
    """`encoder`'s network as a float32 ONNX graph, batch and length left dynamic."""
    hidden = encoder.model.config.hidden_size
    mask = torch.ones(2, 8, dtype=torch.long)
    example = (torch.zeros(2, 8, hidden), mask, mask)
    names = ["inputs_embeds", "attention_mask", "pool_mask"]
    # The tracer warns that Python branches on shapes become constants: they are the ones that pick the causal
    # or padding path, fixed for this model, and would otherwise fill the user's terminal.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            QueryGraph(encoder).eval(),
            example,
            str(path),
            dynamo=False,
            input_names=names,
            output_names=["vectors"],
            dynamic_axes={**{name: {0: "batch", 1: "tokens"} for name in names}, "vectors": {0: "batch"}},
            opset_version=21,
        )


def quantize_graph(
    source: Path,
    target: Path,
    bits: int = WEIGHT_BITS,
    block_size: int = BLOCK_SIZE,
    accuracy_level: int = INT8_ARITHMETIC,
) -> None:
    """Every MatMul with a constant weight → MatMulNBits with `bits`-bit symmetric blocks of `block_size`
    input channels (8 and 32, as the query model has them); the rest as it is."""
    import onnx

    import_onnxruntime()
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer_log = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    level = quantizer_log.level
    quantizer_log.setLevel(logging.WARNING)  # it logs every node of the graph at INFO
    try:
        quantizer = MatMulNBitsQuantizer(
            onnx.load(str(source)),
            bits=bits,
            block_size=block_size,
            is_symmetric=True,
            accuracy_level=accuracy_level,
        )
        quantizer.process()
        quantizer.model.save_model_to_file(str(target), use_external_data_format=False)
    finally:
        quantizer_log.setLevel(level)


def optimize_graph(source: Path, target: Path) -> None:
    """`source` with ONNX Runtime's portable graph optimizations applied, its weights in a file beside it
    (`<target>.data`), which a session maps into memory instead of parsing: a session then starts in about
    0.65 s instead of 1.5 s for the default's float32 graph."""
    onnxruntime = import_onnxruntime()
    options = onnxruntime.SessionOptions()
    # EXTENDED, not ALL: ALL adds layout changes for this CPU's vector width, and a cache may move machines
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(target)
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_file_name", target.name + WEIGHTS_SUFFIX
    )
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
    )
    onnxruntime.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


def build_query_model(
    encoder: Encoder,
    keep_all: bool = False,
    replace: bool = False,
    announce: Callable[[], None] | None = None,
) -> Path | None:
    """Write `encoder`'s query entry into the model cache unless a current one is there (or with `replace`),
    calling `announce()` first; its folder, or None when the model cannot take the ONNX path (see
    `query_model_usable`). The entry keeps the graph chosen here, or with `keep_all` every graph it made."""
    if not query_model_usable(encoder):
        return None
    entry = query_entry(encoder.fingerprint, encoder.max_length)

    def current(_: Path) -> bool:  # asked again under the cache lock: another process may have built it
        return not replace and read_manifest(encoder.fingerprint, encoder.max_length) is not None

    if current(entry):
        return entry
    if announce:
        announce()
    from .models import write_cache_entry

    return write_cache_entry(
        entry.name, lambda folder: _write_entry(encoder, folder, keep_all), QUERY_MARKER, current
    )


def _write_entry(encoder: Encoder, folder: Path, keep_all: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="l2v-export-") as scratch:
        plain, quantized = Path(scratch) / "float32.onnx", Path(scratch) / "int8.onnx"
        export_graph(encoder, plain)
        quantize_graph(plain, quantized)
        optimize_graph(plain, folder / GRAPHS["float32"])
        optimize_graph(quantized, folder / GRAPHS["int8"])
    np.save(folder / EMBEDDINGS_FILE, scaled_embeddings(encoder).astype(np.float16))
    instruction = encoder.query_instruction
    manifest: dict = {
        **write_tokenizers(encoder, folder),
        "format": QUERY_FORMAT,
        "fingerprint": encoder.fingerprint,
        "name": encoder.name,
        "dim": encoder.dim,
        "pooling": encoder.pooling,
        "max_length": encoder.max_length,
        "prefix": encoder._prefix,
        "suffix": encoder._suffix,
        "query_instruction": instruction,
        "instruction_ids": encoder._instruction_tokens(instruction),
    }
    queries = list(SAMPLE_QUERIES)
    reference = encoder.encode(queries, instruction=instruction)
    checks = {"torch": {"ms": median_ms(lambda q: encoder.encode([q], instruction=instruction))}}
    for weights, graph in GRAPHS.items():  # one after the other: ONNX Runtime's idle threads spin a while
        onnx_encoder = QueryEncoder(folder, manifest, graph, query_cache_size=0)
        cosines = (reference * onnx_encoder.encode_queries(queries)).sum(axis=1)
        checks[weights] = {
            "ms": median_ms(lambda q, e=onnx_encoder: e.encode_queries([q])),
            "min_cosine": float(cosines.min()),
        }
    manifest["checks"] = checks
    manifest["graph"] = choose_graph(checks)
    for graph in GRAPHS.values():
        if graph != manifest["graph"] and not keep_all:
            (folder / graph).unlink()
            (folder / (graph + WEIGHTS_SUFFIX)).unlink()
    return manifest


def write_tokenizers(encoder: Encoder, folder: Path) -> dict:
    """The tokenizer as it is, and as a SentencePiece model where one tokenizes the check texts exactly as
    it does; the manifest's fields saying which to use."""
    backend = encoder.tokenizer.backend_tokenizer
    backend.save(str(folder / TOKENIZER_FILE))
    built = spm_model(backend.to_str())
    if built is None:
        return {"tokenizer": "tokenizers"}
    model, unmatched = built
    (folder / SPM_FILE).write_bytes(model)
    fast = QueryTokenizer(folder, {"tokenizer": "sentencepiece", "unmatched": unmatched})
    texts = [*SAMPLE_QUERIES, *TOKENIZER_CHECKS]
    expected = [encoding.ids for encoding in backend.encode_batch(texts, add_special_tokens=False)]
    if fast.ids(texts) != expected:
        log.info("the SentencePiece form of %s's tokenizer differs from it; not used", encoder.name)
        (folder / SPM_FILE).unlink()
        return {"tokenizer": "tokenizers"}
    return {"tokenizer": "sentencepiece", "unmatched": unmatched}


def median_ms(embed: Callable[[str], object]) -> float:
    """Median milliseconds of embedding each sample query alone, after a first round that warms up."""
    timings = []
    for round_ in range(TIMING_ROUNDS + 1):
        for query in SAMPLE_QUERIES:
            start = time.perf_counter()
            embed(query)
            if round_:
                timings.append(time.perf_counter() - start)
    return 1000 * statistics.median(timings)


def choose_graph(checks: dict[str, dict]) -> str | None:
    """The fastest graph whose vectors agree with float32 PyTorch's, if it is faster than PyTorch here."""
    agreeing = [name for name in GRAPHS if checks[name]["min_cosine"] >= MIN_COSINE]
    best = min(agreeing, key=lambda name: checks[name]["ms"], default=None)
    return GRAPHS[best] if best and checks[best]["ms"] < checks["torch"]["ms"] else None

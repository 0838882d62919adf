"""Encoder throughput: our `Encoder.encode` vs sentence-transformers vs a plain transformers loop, and the
same `Encoder` on a faster CPU runtime (OpenVINO, ONNX Runtime, torch.compile).

All three run the same weights, the same bidirectional attention and mean pooling, on the same texts, in one
process, after a warm-up:

- ours: `Encoder.encode` (length sorting, padded-token budget per batch, inference mode);
- sentence-transformers: a `SentenceTransformer` built from the converted Hugging Face directory plus mean
  pooling, its attention switched to bidirectional with `set_bidirectional`;
- plain loop: the tokenizer pads each batch of 32 texts (in input order) to its longest text, mean pooling;
- CPU backends: our `Encoder` with only the model's forward pass swapped, so tokenization, batching and
  pooling are identical and only the runtime differs; each is checked against ours per text.
  - openvino-fp32 / openvino-int8w (`pip install openvino nncf`): converted to OpenVINO, run in fp32 or with
    int8 per-channel weights from `nncf.compress_weights`;
  - onnxruntime-fp32 / onnxruntime-int8 (`pip install onnx onnxruntime`): exported to ONNX (TorchScript
    exporter, dynamic batch and length), run by ONNX Runtime's CPU provider as is or after
    `quantize_dynamic` (int8 per-channel MatMul weights, activations quantized per batch at run time);
  - torch-compile: `torch.compile(dynamic=True)` (inductor); compiling happens in the warm-up, not the timing.
  A backend that fails to build or to run is reported in one line and left out.

Workloads, each shuffled so that lengths are mixed as in real corpora: short texts (Wikipedia sentences,
~30 tokens), long texts (SciFact abstracts cut to 256 tokens), and both together ("mixed"). Tokens/s counts
the real tokens of the texts (specials included, padding not), so every method is credited for the same work.

Every row gives its fraction of the peak FLOP rate (2 · non-embedding params · tokens / time / peak, where the
peak is measured with a large matmul in the same dtype unless `--peak-tflops` is given). On a GPU, bf16 rows
(not fp16: Gemma's activations overflow it) are added. `--budgets` adds our encoder at other padded-token
budgets per batch (`ours@1024`, ...), each checked against `ours` at the cosine bar of 0.9999.

    python benchmarks/encode_throughput.py                          # default model, 256 short + 64 long texts
    python benchmarks/encode_throughput.py --n-short 64 --n-long 16 --threads 2
    python benchmarks/encode_throughput.py --methods ours,openvino-fp32,openvino-int8w --repeats 2
    python benchmarks/encode_throughput.py --backend-check --methods onnxruntime-fp32 --threads 2
    python benchmarks/encode_throughput.py --methods ours --budgets 512,1024,2048 --n-short 128 --n-long 32

`--backend-check` runs only the comparison that decides the CPU default: the mixed texts, ours against the
backends in `--methods` (all of them by default); its last line gives the fastest backend that meets the
cosine bar (the fastest overall if none does) as `speedup X.XX min_cosine Y.YYYY backend NAME`.
"""

import argparse
import json
import os
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from cpu_share import OtherWork

from llm2vec_search.encoder import Encoder
from llm2vec_search.encoder.onnx_export import padding_masks

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
LONG_TOKENS = 256
PLAIN_BATCH = 32
OPENVINO_METHODS = ("openvino-fp32", "openvino-int8w")
ONNXRUNTIME_METHODS = ("onnxruntime-fp32", "onnxruntime-int8")
BACKEND_METHODS = (*OPENVINO_METHODS, *ONNXRUNTIME_METHODS, "torch-compile")
METHODS = ("ours", "sentence-transformers", "plain", *BACKEND_METHODS)
AGREEMENT_MIN_COSINE = 0.9999
# A CPU backend may become the default only if every text stays this close to fp32 torch (issue 12's bar).
BACKEND_MIN_COSINE = 0.99
# Whose vectors each method is checked against.
REFERENCE = {"ours": "plain", "sentence-transformers": "plain"} | {m: "ours" for m in BACKEND_METHODS}


@dataclass
class Row:
    """One timed (method, dtype, workload) cell."""

    method: str
    dtype: str
    workload: str
    texts: int
    tokens: int
    seconds: float
    vectors: np.ndarray
    peak_fraction: float | None = None

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    @property
    def texts_per_s(self) -> float:
        return self.texts / self.seconds


def load_texts(tokenizer, n_short: int, n_long: int, seed: int) -> dict[str, list[str]]:
    """Short Wikipedia sentences, SciFact abstracts cut to LONG_TOKENS tokens, and both shuffled together."""
    sentences_path, corpus_path = DATA / "wiki_en" / "sentences.txt", DATA / "scifact" / "corpus.jsonl"
    for path in (sentences_path, corpus_path):
        if not path.is_file():
            sys.exit(f"missing benchmark data: {path} (see ../shared/data/README.md)")
    rng = random.Random(seed)
    sentences = [line for line in sentences_path.read_text().splitlines() if line.strip()]
    short = rng.sample(sentences, n_short)
    docs = [json.loads(line) for line in corpus_path.read_text().splitlines() if line.strip()]
    long = []
    for doc in rng.sample(docs, n_long):
        ids = tokenizer(f"{doc['title']}\n{doc['text']}", add_special_tokens=False)["input_ids"]
        long.append(tokenizer.decode(ids[:LONG_TOKENS]))
    mixed = short + long
    rng.shuffle(mixed)
    workloads = {"short": short, "long": long, "mixed": mixed}
    return {name: texts for name, texts in workloads.items() if texts}


def plain_loop(model, tokenizer, device: torch.device) -> Callable[[list[str]], np.ndarray]:
    """The baseline: batches of 32 in input order, padded to the longest, mean over the text's tokens."""

    @torch.inference_mode()
    def encode(texts: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), PLAIN_BATCH):
            batch = tokenizer(
                texts[start : start + PLAIN_BATCH],
                padding=True,
                return_tensors="pt",
                return_special_tokens_mask=True,
            ).to(device)
            hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            # Pool the text's own tokens, not BOS/EOS, as `Encoder` does, so that vectors can be compared.
            mask = (batch["attention_mask"] * (1 - batch["special_tokens_mask"])).unsqueeze(-1)
            pooled = (hidden.last_hidden_state.float() * mask).sum(1) / mask.sum(1).clamp(min=1)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
        return torch.cat(out).numpy()

    return encode


def sentence_transformer(weights_dir: Path, device: torch.device, dtype: torch.dtype, max_length: int):
    """A SentenceTransformer over the same converted weights, mean pooling, bidirectional attention."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    from llm2vec_search.encoder.bidirectional import set_bidirectional

    transformer = Transformer(str(weights_dir), max_seq_length=max_length, model_kwargs={"dtype": dtype})
    set_bidirectional(transformer.auto_model, True)
    pooling = Pooling(transformer.get_embedding_dimension(), "mean")
    model = SentenceTransformer(modules=[transformer, pooling], device=str(device))

    def encode(texts: list[str]) -> np.ndarray:
        return model.encode(texts, batch_size=PLAIN_BATCH, convert_to_numpy=True, normalize_embeddings=True)

    return encode


# What a backend runs in place of the model: (input_ids, attention_mask) -> last hidden states.
Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class BackendForward(torch.nn.Module):
    """Stands in for the torch model inside `Encoder`: the same call, run by another runtime."""

    def __init__(self, forward: Forward, config) -> None:
        super().__init__()
        # `Encoder.device` reads the first parameter's device; every backend here runs on the CPU.
        self.anchor = torch.nn.Parameter(torch.empty(0), requires_grad=False)
        self.run = forward
        # The graph builds its own masks from the padding mask, so `Encoder.forward` is to pass that mask as
        # it is: an attention implementation `attention_masks` does not build masks for says so.
        self.config = SimpleNamespace(hidden_size=config.hidden_size, _attn_implementation="backend")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        return SimpleNamespace(last_hidden_state=self.run(input_ids, attention_mask))


def numpy_forward(run: Callable[[dict[str, np.ndarray]], np.ndarray]) -> Forward:
    """A Forward over a runtime that takes {input name: array} and returns the hidden states as an array."""

    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        feeds = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
        return torch.from_numpy(run(feeds))

    return forward


class PaddingOnlyMasks(torch.nn.Module):
    """The model with its attention masks built here, in plain tensor ops that trace into a graph.

    transformers builds masks with vmap'd mask functions, which neither TorchScript tracing nor OpenVINO
    converts. With bidirectional attention and texts no longer than the sliding window, every layer's mask is
    just the padding mask, passed per layer type as the model accepts it.
    """

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        masks = padding_masks(self.model.config, attention_mask)
        return self.model(input_ids=input_ids, attention_mask=masks, use_cache=False).last_hidden_state


INPUTS = ("input_ids", "attention_mask")
EXAMPLE = torch.ones(2, 8, dtype=torch.long)  # traces and exports: 2 texts of 8 tokens, shapes left dynamic


def traceable(encoder) -> PaddingOnlyMasks:
    """`encoder`'s model with masks that trace; only valid while no text can pass the sliding window."""
    window = getattr(encoder.model.config, "sliding_window", None)
    if window is not None and encoder.max_length > window:
        sys.exit(f"backend rows need max_length <= the sliding window ({window}); got {encoder.max_length}")
    return PaddingOnlyMasks(encoder.model).eval()


def openvino_forwards(encoder, names: list[str]) -> dict[str, Forward]:
    """{name: Forward} running `encoder`'s model converted to OpenVINO, one per asked-for variant."""
    import openvino as ov

    graph = ov.convert_model(
        traceable(encoder),
        example_input=dict.fromkeys(INPUTS, EXAMPLE),
        input=[(name, ov.PartialShape([-1, -1]), ov.Type.i64) for name in INPUTS],
    )
    core = ov.Core()
    threads = torch.get_num_threads()

    def compile_variant(name: str):
        if name == "openvino-int8w":
            import nncf

            return core.compile_model(nncf.compress_weights(graph), "CPU", {"INFERENCE_NUM_THREADS": threads})
        config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
        return core.compile_model(graph, "CPU", config)

    return {name: numpy_forward(lambda feeds, c=compile_variant(name): c(feeds)[0]) for name in names}


def onnxruntime_forwards(encoder, names: list[str]) -> dict[str, Forward]:
    """{name: Forward} running `encoder`'s model exported to ONNX in ONNX Runtime, as is or int8-quantized.

    The exported files live in a temporary folder for this call only: the sessions keep the weights.
    """
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    with tempfile.TemporaryDirectory(prefix="l2v-onnx-") as folder:
        paths = {"onnxruntime-fp32": f"{folder}/fp32.onnx", "onnxruntime-int8": f"{folder}/int8.onnx"}
        with torch.no_grad():
            # The TorchScript exporter, which traces the model as the OpenVINO conversion above does.
            torch.onnx.export(
                traceable(encoder),
                (EXAMPLE, EXAMPLE),
                paths["onnxruntime-fp32"],
                dynamo=False,
                input_names=list(INPUTS),
                output_names=["last_hidden_state"],
                dynamic_axes={name: {0: "batch", 1: "tokens"} for name in [*INPUTS, "last_hidden_state"]},
                opset_version=18,
            )
        if "onnxruntime-int8" in names:
            # MatMul weights only: the embedding table is a lookup, which int8 would make no faster.
            quantize_dynamic(
                paths["onnxruntime-fp32"],
                paths["onnxruntime-int8"],
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=["MatMul"],
            )
        sessions = {
            name: ort.InferenceSession(paths[name], options, providers=["CPUExecutionProvider"])
            for name in names
        }
    return {
        name: numpy_forward(lambda feeds, s=session: s.run(None, feeds)[0])
        for name, session in sessions.items()
    }


def torch_compile_forward(encoder) -> Forward:
    """`encoder`'s model under torch.compile (inductor), symbolic shapes: new batch shapes reuse the code."""
    return torch.compile(traceable(encoder), dynamic=True)


def backend_forwards(encoder, names: list[str]) -> tuple[dict[str, Forward], dict[str, str]]:
    """({name: Forward} for the asked-for backends that could be built, {name: one-line failure})."""
    families = [
        (OPENVINO_METHODS, partial(openvino_forwards, encoder)),
        (ONNXRUNTIME_METHODS, partial(onnxruntime_forwards, encoder)),
        (("torch-compile",), lambda _: {"torch-compile": torch_compile_forward(encoder)}),
    ]
    forwards, failures = {}, {}
    for family, build in families:
        asked = [name for name in names if name in family]
        if not asked:
            continue
        try:
            forwards |= build(asked)
        except Exception as error:  # a backend that cannot be built is a result, not a crash
            failures |= dict.fromkeys(asked, one_line(error))
    return forwards, failures


def one_line(error: Exception) -> str:
    first = next((line for line in str(error).splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {first.strip()[:200]}"


def build_methods(args, device: torch.device, dtype_name: str):
    """({name: encode function} for the methods asked for on this device and dtype, our Encoder,
    {backend: one-line failure})."""
    from llm2vec_search.encoder.models import resolve_weights

    encoder = Encoder.from_pretrained(args.model, device=str(device), dtype=dtype_name)
    methods: dict[str, Callable[[list[str]], np.ndarray]] = {}
    if "ours" in args.methods:
        methods["ours"] = lambda texts: encoder.encode(texts, max_batch_tokens=args.max_batch_tokens)
        for budget in args.budgets:
            methods[f"ours@{budget}"] = partial(encoder.encode, max_batch_tokens=budget)
    if "sentence-transformers" in args.methods:
        weights_dir, _ = resolve_weights(args.st_weights)
        methods["sentence-transformers"] = sentence_transformer(
            weights_dir, device, encoder.model.dtype, encoder.max_length
        )
    if "plain" in args.methods:
        methods["plain"] = plain_loop(encoder.model, encoder.tokenizer, device)
    backends = [m for m in args.methods if m in BACKEND_METHODS]
    failures: dict[str, str] = {}
    if backends and device.type == "cpu":
        forwards, failures = backend_forwards(encoder, backends)
        for name, forward in forwards.items():
            backend = Encoder(
                BackendForward(forward, encoder.model.config),
                encoder.tokenizer,
                pooling=encoder.pooling,
                max_length=encoder.max_length,
            )
            methods[name] = partial(backend.encode, max_batch_tokens=args.max_batch_tokens)
    return methods, encoder, failures


def time_call(encode: Callable[[list[str]], np.ndarray], texts: list[str], device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    vectors = encode(texts)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, vectors


def non_embedding_params(model) -> int:
    """Parameters that do multiply-adds: all but the token embedding table (a lookup)."""
    embedding = model.get_input_embeddings().weight.numel()
    return sum(p.numel() for p in model.parameters()) - embedding


def matmul_peak_flops(device: torch.device, dtype: torch.dtype) -> float:
    """The FLOP rate a large square matmul reaches here: a measured stand-in for the datasheet peak."""
    size, repeats = (8192, 20) if device.type == "cuda" else (2048, 10)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def warm_up(methods: dict, warm: list[str], failures: dict[str, str]) -> None:
    """Run each method once on a mixed batch and on a single text (torch.compile compiles both shapes here);
    a method that fails is dropped, its failure kept."""
    for name, encode in list(methods.items()):
        began = time.perf_counter()
        try:
            encode(warm)
            encode(warm[:1])
        except Exception as error:
            failures[name] = one_line(error)
            del methods[name]
            continue
        print(f"  warm-up {name}: {time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)


def run(args) -> tuple[list[Row], dict[str, str]]:
    from llm2vec_search.encoder import pick_device

    device, _ = pick_device(args.device)
    dtypes = ["float32", "bfloat16"] if device.type == "cuda" else ["float32"]
    rows: list[Row] = []
    failures: dict[str, str] = {}
    peaks: dict[str, float] = {}
    for dtype_name in dtypes:
        methods, encoder, failed = build_methods(args, device, dtype_name)
        failures |= failed
        workloads = load_texts(encoder.tokenizer, args.n_short, args.n_long, args.seed)
        token_counts = {
            name: sum(len(ids) for ids in encoder.tokenizer(texts)["input_ids"])
            for name, texts in workloads.items()
        }
        warm_up(methods, [text for texts in workloads.values() for text in texts[:4]], failures)
        if args.backend_check:
            workloads = {"mixed": workloads["mixed"]}
        for workload, texts in workloads.items():
            for method, encode in methods.items():
                seconds, vectors = min(
                    (time_call(encode, texts, device) for _ in range(args.repeats)), key=lambda r: r[0]
                )
                row = Row(method, dtype_name, workload, len(texts), token_counts[workload], seconds, vectors)
                rows.append(row)
                print(
                    f"  {method:22s} {dtype_name:8s} {workload:6s} {row.tokens_per_s:9.0f} tokens/s",
                    file=sys.stderr,
                    flush=True,
                )
        flops_per_token = 2 * non_embedding_params(encoder.model)
        peak = args.peak_tflops * 1e12 if args.peak_tflops else matmul_peak_flops(device, encoder.model.dtype)
        for row in rows:
            if row.dtype == dtype_name:
                row.peak_fraction = flops_per_token * row.tokens_per_s / peak
        print(f"  peak {dtype_name}: {peak / 1e12:.3f} TFLOP/s", file=sys.stderr)
        peaks[dtype_name] = peak
        del methods, encoder
    return rows, failures, peaks


def ratio(rows: list[Row], row: Row, method: str) -> str:
    base = find(rows, method, row.dtype, row.workload)
    return f"{row.tokens_per_s / base.tokens_per_s:.2f}x" if base else "-"


def print_table(rows: list[Row]) -> None:
    """One line per method × dtype × workload; ratios compare tokens/s within the same dtype and workload."""
    columns = ["method", "dtype", "texts", "tokens/s", "texts/s", "vs plain", "vs ST", "vs ours", "peak %"]
    lines = []
    for row in sorted(rows, key=lambda r: (r.dtype, r.workload != "short", r.workload)):
        cells = [
            row.method,
            row.dtype,
            row.workload,
            f"{row.tokens_per_s:.0f}",
            f"{row.texts_per_s:.1f}",
            ratio(rows, row, "plain"),
            ratio(rows, row, "sentence-transformers"),
            ratio(rows, row, "ours"),
        ]
        cells.append(f"{100 * row.peak_fraction:.1f}%")
        lines.append(cells)
    widths = [max(len(c) for c in column) for column in zip(columns, *lines, strict=True)]
    for cells in [columns, *lines]:
        print(
            "  ".join(
                c.ljust(w) if i < 3 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
        )


def find(rows: list[Row], method: str, dtype: str, workload: str) -> Row | None:
    return next((r for r in rows if (r.method, r.dtype, r.workload) == (method, dtype, workload)), None)


def print_agreement(rows: list[Row]) -> bool:
    """Per-text cosine of each method's float32 vectors with its REFERENCE's (ours at another token budget:
    with ours). True unless ours disagrees."""
    ok = True
    print("\nagreement (cosine per text, float32):")
    for row in rows:
        budget_row = row.method.startswith("ours@")
        reference = "ours" if budget_row else REFERENCE.get(row.method, "")
        base = find(rows, reference, "float32", row.workload)
        if row.dtype != "float32" or base is None:
            continue
        cosines = (row.vectors * base.vectors).sum(1)
        note = ""
        if row.method == "ours" or budget_row:
            passed = cosines.min() >= AGREEMENT_MIN_COSINE
            ok &= passed
            note = "ok" if passed else f"FAIL (< {AGREEMENT_MIN_COSINE})"
        elif row.method == "sentence-transformers":
            note = "(its mean includes the BOS token)"
        elif row.method in BACKEND_METHODS:
            meets = cosines.min() >= BACKEND_MIN_COSINE
            note = f"{'meets' if meets else 'misses'} the backend bar (>= {BACKEND_MIN_COSINE})"
        print(
            f"  {row.method:22s} vs {base.method:5s} {row.workload:6s} "
            f"min {cosines.min():.6f} mean {cosines.mean():.6f} {note}"
        )
    return ok


def backend_check_line(rows: list[Row]) -> str:
    """The decision on the mixed texts: the fastest backend that meets the cosine bar (else the fastest)."""
    ours = find(rows, "ours", "float32", "mixed")
    candidates = []
    for row in rows:
        if row.method in BACKEND_METHODS and row.dtype == "float32" and row.workload == "mixed":
            min_cosine = float((row.vectors * ours.vectors).sum(1).min())
            candidates.append((min_cosine >= BACKEND_MIN_COSINE, row.tokens_per_s, min_cosine, row.method))
    if not candidates:
        return "speedup 0.00 min_cosine 0.0000 backend none"
    _, rate, min_cosine, name = max(candidates)
    return f"speedup {rate / ours.tokens_per_s:.2f} min_cosine {min_cosine:.4f} backend {name}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="default", help="model spec for ours and the plain loop")
    parser.add_argument(
        "--st-weights",
        default="gemma3-270m",
        help="weights spec for sentence-transformers (same as --model's)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--n-short", type=int, default=256)
    parser.add_argument("--n-long", type=int, default=64)
    parser.add_argument(
        "--methods",
        default=None,
        help=f"comma list of {', '.join(METHODS)} (default: all; --backend-check: ours and the backends)",
    )
    parser.add_argument(
        "--max-batch-tokens", type=int, default=None, help="ours: padded tokens per batch (else the device's)"
    )
    parser.add_argument(
        "--budgets",
        default="",
        help="comma list of padded-token budgets: adds ours@BUDGET rows, checked against ours",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument(
        "--repeats", type=int, default=1, help="time each cell this many times, keep the best"
    )
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="GPU peak for the dtype (else measured)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--backend-check",
        action="store_true",
        help="only the CPU-default decision: ours vs the backends on the mixed texts, verdict last",
    )
    args = parser.parse_args()
    if args.methods is None:
        args.methods = ",".join(BACKEND_METHODS if args.backend_check else METHODS)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods: {', '.join(sorted(unknown))}")
    if args.backend_check:
        args.methods = ["ours", *(m for m in args.methods if m in BACKEND_METHODS)]
    args.budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")

    cores = os.cpu_count() or 1
    started = time.perf_counter()
    with OtherWork() as other:
        rows, failures, peaks = run(args)
    print(
        f"\nmodel {args.model}, torch {torch.__version__}, {torch.get_num_threads()} threads, {cores} cores, "
        f"max_batch_tokens {args.max_batch_tokens or 'the default'}, best of {args.repeats}"
    )
    peak_line = ", ".join(f"{dtype} {peak / 1e9:.0f} GFLOP/s" for dtype, peak in peaks.items())
    print(f"peak %: 2 x non-embedding parameters x tokens/s over a large matmul's rate here ({peak_line})")
    print_table(rows)
    ok = print_agreement(rows)
    if failures:
        print("\nfailed (left out):")
        for name, failure in failures.items():
            print(f"  {name:22s} {failure}")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    print(other.line())
    if args.backend_check:
        print(backend_check_line(rows))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

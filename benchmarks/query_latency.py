"""How long a query takes from the shell and warm, and what a first use costs (issue 23).

Rows, each from this one run (run it on an idle machine; every process is fresh where it says so):
- cold one-shot query: `l2v-search query TEXT --no-server` in a fresh process, the default (hybrid) mode (its
  queries through the query model that `index` built), the same with `--dtype float32` (which runs the full
  PyTorch model), and `--mode bm25`, alternating, the median of `--runs` processes each, on an index of the
  first `--files` files of sample_corpus/ (built first, through the CLI); then the default mode again while
  `l2v-search serve` runs on that index, which the query asks instead;
- model load: the query model (`find_query_encoder`) and `Encoder.from_pretrained("default")`, each in a
  fresh process with its cache entry built, the median of `--runs` (the call alone, and the whole process);
- warm query embedding, query cache off, p50/p99 over `--queries` SciFact test claims one at a time: the full
  model in float32 PyTorch and the query model, and the lowest cosine between their vectors;
- `--first-use`: the one-time GGUF conversion into an empty cache (wall and CPU seconds), the first load,
  which merges the adapters into the ready entry (needs ~2.2 GB of temporary disk), and the query model's
  build (export, quantization, checks);
- `--ndcg`: squad_dev dense nDCG@10 with each model's query vectors against the same float32 documents
  (embeds the ~1.4k chunks once into the eval cache: tens of minutes the first time).

    python benchmarks/query_latency.py
    python benchmarks/query_latency.py --first-use --ndcg
    python benchmarks/query_latency.py --runs 1 --files 1 --queries 3      # a smoke run
"""

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console
from rich.table import Table
from search_latency import ROOT, embed_one_at_a_time, percentiles, read_texts

if TYPE_CHECKING:
    from llm2vec_search.encoder import Encoder

QUERY = "why does the sea level rise and fall twice a day"
LOAD = (
    "import time; began = time.perf_counter(); from llm2vec_search.encoder import Encoder; "
    "loading = time.perf_counter(); Encoder.from_pretrained('default'); "
    "print(time.perf_counter() - loading)"
)
QUERY_LOAD = (  # the fingerprint as an index records it, so that nothing imports torch
    "import time; began = time.perf_counter(); from llm2vec_search.encoder.onnx_query import "
    "find_query_encoder; loading = time.perf_counter(); "
    "assert find_query_encoder('{fingerprint}', 512); print(time.perf_counter() - loading)"
)
BUILD = (
    "import time; from llm2vec_search.encoder import Encoder; "
    "from llm2vec_search.encoder.onnx_export import build_query_model; encoder = Encoder.from_pretrained("
    "'default'); began = time.perf_counter(); build_query_model(encoder); print(time.perf_counter() - began)"
)
CONVERT = (
    "from llm2vec_search.encoder.models import DEFAULT_BASE, convert_gguf, registered_source; "
    "convert_gguf(registered_source(DEFAULT_BASE))"
)
console = Console(width=120)


def cli(*args: str, env: dict | None = None) -> float:
    """Wall seconds of one fresh `l2v-search` process; it must succeed."""
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "llm2vec_search", *args], check=True, capture_output=True, env=env)
    return time.perf_counter() - began


def python(code: str, env: dict | None = None) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, stdout) of a fresh Python process running `code`; it must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, done.stdout


@contextmanager
def running_serve(where: list[str]) -> Iterator[None]:
    """`l2v-search serve` on the index, up (its model loaded) for the block."""
    port = free_port()
    command = [sys.executable, "-m", "llm2vec_search", "serve", *where, "--port", str(port)]
    server = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    try:
        while True:
            assert server.poll() is None, "serve stopped"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.2)
        yield
    finally:
        server.terminate()
        server.wait(timeout=60)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cold_rows(table: Table, runs: int, files: int) -> None:
    corpus = sorted((ROOT / "sample_corpus").glob("*.md"))[:files]
    with tempfile.TemporaryDirectory() as folder:
        where = ["--name", "bench", "--index-dir", folder]
        cli("index", *map(str, corpus), *where)
        cli("query", QUERY, *where, "--no-server")  # the page cache warm, as for any query after the first
        full = ("--dtype", "float32")
        cli("query", QUERY, *where, "--no-server", *full)
        times: dict[str, list[float]] = {
            "default mode (hybrid)": [],
            "--dtype float32": [],
            "--mode bm25": [],
        }
        for _ in range(runs):
            times["default mode (hybrid)"].append(cli("query", QUERY, *where, "--no-server"))
            times["--dtype float32"].append(cli("query", QUERY, *where, "--no-server", *full))
            times["--mode bm25"].append(cli("query", QUERY, "--mode", "bm25", *where, "--no-server"))
        with running_serve(where):
            cli("query", QUERY, *where)
            times["default mode, a `serve` running"] = [cli("query", QUERY, *where) for _ in range(runs)]
    bm25 = statistics.median(times["--mode bm25"])
    for mode, samples in times.items():
        median = statistics.median(samples)
        table.add_row(
            f"cold one-shot query, {mode}",
            f"median of {runs} fresh processes, {len(corpus)} files indexed",
            f"{median:.2f} s",
            f"{median / bm25:.1f}× bm25",
        )


def load_rows(table: Table, runs: int) -> None:
    from llm2vec_search.encoder.encoder import model_fingerprint

    python(LOAD)  # builds the ready entry if it is missing; not counted
    python(BUILD)  # builds the query model if it is missing; not counted
    query_load = QUERY_LOAD.format(fingerprint=model_fingerprint("default"))
    for what, code, call in (
        ("query model load", query_load, "find_query_encoder call"),
        ("full model load", LOAD, "from_pretrained call"),
    ):
        samples = [python(code) for _ in range(runs)]
        seconds = statistics.median(float(out) for _, _, out in samples)
        process = statistics.median(wall for wall, _, _ in samples)
        table.add_row(what, f"median of {runs} fresh processes", f"{seconds:.2f} s", call)
        table.add_row("  the whole process", "python start, imports, load", f"{process:.2f} s", "")


def embedders(encoder: "Encoder") -> dict[str, Callable[[str], np.ndarray]]:
    """{path: embed one query} for `encoder` (the full model) and its query model, query caches off."""
    from llm2vec_search.encoder.onnx_query import find_query_encoder

    query_model = find_query_encoder(encoder.fingerprint, encoder.max_length, query_cache_size=0)
    assert query_model is not None, "no query model (or it was not faster here): run `l2v-search index`"
    return {
        "float32 PyTorch": lambda text: encoder.encode([text], instruction=encoder.query_instruction)[0],
        f"query model ({query_model.graph})": lambda text: query_model.encode_queries([text])[0],
    }


def warm_rows(table: Table, queries: int) -> None:
    from llm2vec_search.encoder import Encoder

    claims = read_texts()[1][:queries]
    vectors: dict[str, np.ndarray] = {}
    # one path after the other: ONNX Runtime's idle threads spin a while after a run
    for path, embed in embedders(Encoder.from_pretrained("default")).items():
        vectors[path], samples = embed_one_at_a_time(embed, claims)
        p50, p99 = percentiles(samples)
        table.add_row(
            f"warm query embedding, {path}",
            f"{len(claims)} SciFact claims",
            f"{p50:.0f} ms p50",
            f"{p99:.0f} ms p99",
        )
    full, fast = vectors.values()
    table.add_row("  lowest cosine between the two", "", f"{(full * fast).sum(axis=1).min():.6f}", "")


def first_use_rows(table: Table) -> None:
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "L2V_SEARCH_CACHE_DIR": folder}
        wall, cpu, _ = python(CONVERT, env)
        table.add_row("GGUF conversion (once)", "empty cache", f"{wall:.0f} s", f"{cpu:.0f} CPU s")
        wall, cpu, out = python(LOAD, env)
        table.add_row("first load: adapters merged into the ready entry", "", f"{float(out):.1f} s", "")
        wall, cpu, out = python(BUILD, env)
        table.add_row(
            "query model build (once, by `index`)", "export, quantize, check", f"{float(out):.1f} s", ""
        )


def ndcg_rows(table: Table) -> None:
    from llm2vec_search.encoder import Encoder
    from llm2vec_search.evaluation.beir import load_beir
    from llm2vec_search.evaluation.retrieval import run_retrieval
    from llm2vec_search.indexing.options import SearchOptions

    dataset = load_beir(ROOT.parent / "shared" / "data" / "squad_dev", "dev")
    encoder = Encoder.from_pretrained("default", max_length=256)  # the documents, as quality.md's rows
    for path, embed in embedders(Encoder.from_pretrained("default")).items():
        query_vectors = {key: embed(text) for key, text in dataset.queries.items()}
        result = run_retrieval(dataset, encoder, SearchOptions(mode="dense"), query_vectors=query_vectors)
        table.add_row(
            f"squad_dev dense nDCG@10, {path} queries",
            f"{result.queries} queries, float32 documents",
            f"{result.metrics['ndcg@10']:.4f}",
            "",
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per cold row")
    parser.add_argument("--files", type=int, default=10, help="sample_corpus files in the cold rows' index")
    parser.add_argument("--queries", type=int, default=200, help="SciFact claims for the warm row")
    parser.add_argument("--first-use", action="store_true", help="also the conversion and the first load")
    parser.add_argument("--ndcg", action="store_true", help="also squad_dev dense nDCG@10")
    args = parser.parse_args()
    table = Table(title=f"query latency, default model ({os.cpu_count()} CPUs)")
    for column in ("what", "how", "time", ""):
        table.add_column(column)
    if args.first_use:
        first_use_rows(table)
    cold_rows(table, args.runs, args.files)
    load_rows(table, args.runs)
    warm_rows(table, args.queries)
    if args.ndcg:
        ndcg_rows(table)
    console.print(table)


if __name__ == "__main__":
    main()

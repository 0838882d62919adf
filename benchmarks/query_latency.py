"""How long a query takes from the shell and warm, and what a first use costs (issue 23).

Rows, each from this one run (run it on an idle machine; every process is fresh where it says so):
- cold one-shot query: `l2v-search query TEXT` in a fresh process, the default (hybrid) mode and
  `--mode bm25`, alternating, the median of `--runs` processes each, on an index of the first `--files`
  files of sample_corpus/ (built first, through the CLI);
- model load: `Encoder.from_pretrained("default")` in a fresh process with the model's ready entry in the
  cache, the median of `--runs` (the call alone, and the whole process with its imports);
- warm query embedding, query cache off: p50/p99 over `--queries` SciFact test claims, one at a time;
- `--first-use`: the one-time GGUF conversion into an empty cache (wall and CPU seconds) and the first load,
  which merges the adapters into the ready entry (needs ~2.2 GB of temporary disk);
- `--ndcg`: squad_dev dense nDCG@10 (embeds its ~1.4k chunks once into the eval cache: tens of minutes).

    python benchmarks/query_latency.py
    python benchmarks/query_latency.py --first-use --ndcg
    python benchmarks/query_latency.py --runs 1 --files 1 --queries 3      # a smoke run
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from rich.console import Console
from rich.table import Table
from search_latency import ROOT, percentiles, read_texts

QUERY = "why does the sea level rise and fall twice a day"
LOAD = (
    "import time; began = time.perf_counter(); from llm2vec_search.encoder import Encoder; "
    "loading = time.perf_counter(); Encoder.from_pretrained('default'); "
    "print(time.perf_counter() - loading)"
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


def cold_rows(table: Table, runs: int, files: int) -> None:
    corpus = sorted((ROOT / "sample_corpus").glob("*.md"))[:files]
    with tempfile.TemporaryDirectory() as folder:
        where = ["--name", "bench", "--index-dir", folder]
        cli("index", *map(str, corpus), *where)
        cli("query", QUERY, *where)  # the page cache warm, as for any query after the first
        times: dict[str, list[float]] = {"default mode (hybrid)": [], "--mode bm25": []}
        for _ in range(runs):
            times["default mode (hybrid)"].append(cli("query", QUERY, *where))
            times["--mode bm25"].append(cli("query", QUERY, "--mode", "bm25", *where))
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
    python(LOAD)  # builds the ready entry if it is missing; not counted
    samples = [python(LOAD) for _ in range(runs)]
    call = statistics.median(float(out) for _, _, out in samples)
    process = statistics.median(wall for wall, _, _ in samples)
    table.add_row("model load", f"median of {runs} fresh processes", f"{call:.2f} s", "from_pretrained call")
    table.add_row("  the whole process", "python start, imports, load", f"{process:.2f} s", "")


def warm_rows(table: Table, queries: int) -> None:
    from llm2vec_search.encoder import Encoder

    encoder = Encoder.from_pretrained("default")
    claims = read_texts()[1][:queries]
    for text in claims[:3]:
        encoder.encode([text], instruction=encoder.query_instruction)
    samples = []
    for text in claims:
        began = time.perf_counter()
        encoder.encode([text], instruction=encoder.query_instruction)
        samples.append(time.perf_counter() - began)
    p50, p99 = percentiles(samples)
    table.add_row(
        "warm query embedding, cache off",
        f"{len(claims)} SciFact claims",
        f"{p50:.0f} ms p50",
        f"{p99:.0f} ms p99",
    )


def first_use_rows(table: Table) -> None:
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "L2V_SEARCH_CACHE_DIR": folder}
        wall, cpu, _ = python(CONVERT, env)
        table.add_row("GGUF conversion (once)", "empty cache", f"{wall:.0f} s", f"{cpu:.0f} CPU s")
        wall, cpu, out = python(LOAD, env)
        table.add_row("first load: adapters merged into the ready entry", "", f"{float(out):.1f} s", "")


def ndcg_row(table: Table) -> None:
    from llm2vec_search.encoder import Encoder
    from llm2vec_search.evaluation.beir import load_beir
    from llm2vec_search.evaluation.retrieval import run_retrieval
    from llm2vec_search.indexing.options import SearchOptions

    dataset = load_beir(ROOT.parent / "shared" / "data" / "squad_dev", "dev")
    result = run_retrieval(dataset, Encoder.from_pretrained("default"), SearchOptions(mode="dense"))
    table.add_row(
        "squad_dev dense nDCG@10", f"{result.queries} queries", f"{result.metrics['ndcg@10']:.4f}", ""
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
        ndcg_row(table)
    console.print(table)


if __name__ == "__main__":
    main()

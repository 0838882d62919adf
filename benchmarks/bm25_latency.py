"""BM25 query latency with and without English stopwords in the FTS5 query, on the same store, in one process.

The store is the one `search_latency.py` builds (real SciFact abstracts cycled to each size, FTS5 filled by
the store's triggers); the queries are the 300 SciFact test claims, each run through `fts_query` with the
Lucene stop set (what search does) and with no stop set (what it did before), then `Store.bm25` for the top
50 (the depth hybrid search fuses). No model is loaded.

    python benchmarks/bm25_latency.py                  # 10k and 100k chunks
    python benchmarks/bm25_latency.py --sizes 1000
"""

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from search_latency import build_store, percentiles, read_texts

from llm2vec_search.indexing.search import english_stopwords, fts_query

DEPTH = 50


def time_bm25(store, queries: list[str], stopwords: frozenset[str]) -> tuple[float, float]:
    samples = []
    for text in queries:
        began = time.perf_counter()
        store.bm25(fts_query(text, stopwords), DEPTH)
        samples.append(time.perf_counter() - began)
    return percentiles(samples)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    texts, queries = read_texts()
    table = Table(title=f"BM25 (FTS5) latency, top {DEPTH}, {len(queries)} SciFact test claims one at a time")
    for column in ("chunks", "stopwords", "p50 ms", "p99 ms", "p50 vs all words"):
        table.add_column(column, justify="right")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as folder:
            store = build_store(Path(folder), texts, size)
            time_bm25(store, queries[:20], frozenset())  # warm the page cache
            every_word = time_bm25(store, queries, frozenset())
            without = time_bm25(store, queries, english_stopwords())
            table.add_row(f"{size:,}", "kept (before)", *(f"{ms:.1f}" for ms in every_word), "1.00×")
            table.add_row(
                f"{size:,}",
                "dropped (now)",
                *(f"{ms:.1f}" for ms in without),
                f"{every_word[0] / without[0]:.2f}× faster",
            )
            store.close()
    Console(width=120).print(table)


if __name__ == "__main__":
    main()

"""BM25 (FTS5) query latency at 10k and 100k chunks, and what the match budget costs in quality.

Latency: the store `search_latency.py` builds (real SciFact abstracts cycled to each size, FTS5 filled by the
store's triggers), the 300 SciFact test claims as queries, top 50 (the depth hybrid search fuses), one query
at a time, no model. Rows, all with English stopwords dropped from the query:
- `join (before)`: the ranking query that joined `chunks` and read every matching row (kept here as SQL);
- `FTS5 first, exact`: `Store.bm25` with no match budget;
- `FTS5 first, budget`: what search does now (`bm25_ranking` with `BM25_MATCH_BUDGET`): past the budget only
  chunks holding one of the query's rarer words are ranked, still scored on all its words;
- `of which: word counts`: the part of it that counts each word's chunks exactly (for the budget and for the
  IDF mass hybrid fusion divides BM25 by).

Quality (`--quality`): nDCG@10 of BM25 on SciFact test and `squad_dev`, through the cached BM25-only eval
index of the default model's chunks, exact vs the budget. These indexes are small (~5k and ~1.4k chunks), so
the budget is also scaled to each index's size (budget × chunks / 100,000) to show what it does to a
100k-chunk index of the same kind of text: the latency store is SciFact cycled ~19 times, so every word's
chunk count there is ~19 times its count in SciFact.

    python benchmarks/bm25_latency.py                   # latency at 10k and 100k chunks
    python benchmarks/bm25_latency.py --sizes 1000 --quality
"""

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table
from search_latency import ROOT, build_store, percentiles, read_texts

from llm2vec_search.evaluation.beir import load_beir
from llm2vec_search.evaluation.metrics import mean_metrics
from llm2vec_search.evaluation.retrieval import LexicalOnlyEncoder, build_eval_index, eval_chunking
from llm2vec_search.indexing.search import (
    BM25_MATCH_BUDGET,
    bm25_ranking,
    fts_query,
    query_words,
    word_chunk_counts,
)
from llm2vec_search.indexing.store import BM25_SCORE, CHUNK_COLUMNS

DEPTH = 50
NO_BUDGET = 10**12
JOIN_RANKING = (
    f"SELECT {CHUNK_COLUMNS}, {BM25_SCORE} AS score "
    "FROM chunks_fts JOIN chunks ON chunks.id = chunks_fts.rowid "
    "WHERE chunks_fts MATCH ? AND chunks.committed = 1 ORDER BY score LIMIT ?"
)
console = Console(width=120)


def time_each(queries: list[str], answer) -> tuple[float, float]:
    for text in queries[:20]:  # warm the page cache
        answer(text)
    samples = []
    for text in queries:
        began = time.perf_counter()
        answer(text)
        samples.append(time.perf_counter() - began)
    return percentiles(samples)


def rankings(store) -> dict[str, Callable[[str], object]]:
    """Each ranking timed, by its row's name."""
    return {
        "join (before)": lambda text: store.conn.execute(
            JOIN_RANKING, (fts_query(query_words(text)), DEPTH)
        ).fetchall(),
        "FTS5 first, exact": lambda text: bm25_ranking(store, text, DEPTH, match_budget=NO_BUDGET).hits,
        f"FTS5 first, budget {BM25_MATCH_BUDGET:,} (now)": lambda text: bm25_ranking(store, text, DEPTH).hits,
        "of which: word counts": lambda text: word_chunk_counts(store, query_words(text)),
    }


def latency_table(sizes: list[int]) -> Table:
    texts, queries = read_texts()
    table = Table(title=f"BM25 latency, top {DEPTH}, {len(queries)} SciFact test claims one at a time")
    for column in ("chunks", "ranking", "p50 ms", "p99 ms", "p50 vs before"):
        table.add_column(column, justify="right")
    for size in sizes:
        with tempfile.TemporaryDirectory() as folder:
            store = build_store(Path(folder), texts, size)
            rows = rankings(store)
            before = None
            for name, answer in rows.items():
                p50, p99 = time_each(queries, answer)
                before = before or p50
                speedup = "" if name.startswith("of which") else f"{before / p50:.2f}× faster"
                table.add_row(f"{size:,}", name, f"{p50:.1f}", f"{p99:.1f}", speedup)
            store.close()
    return table


def doc_ranking(store, text: str, budget: int) -> list[str]:
    """Document ids, best first: a document's rank is its best chunk's (as `l2v-search eval` ranks)."""
    hits = bm25_ranking(store, text, 200, match_budget=budget).hits
    return list(dict.fromkeys(chunk.path for chunk, _ in hits))[:100]


def quality_table() -> Table:
    from llm2vec_search.encoder import Encoder

    encoder = LexicalOnlyEncoder(Encoder.from_pretrained("default"))
    table = Table(title="BM25 nDCG@10: exact vs the match budget")
    for column in ("dataset", "chunks", "budget", "nDCG@10", "vs exact"):
        table.add_column(column, justify="right")
    data = ROOT.parent / "shared" / "data"
    for dataset in (load_beir(data / "scifact", "test"), load_beir(data / "squad_dev", "dev")):
        index, _ = build_eval_index(dataset, encoder, *eval_chunking(encoder.max_length))
        with index:
            chunks = index.status().chunks
            scaled = max(1, BM25_MATCH_BUDGET * chunks // 100_000)
            exact = None
            for name, budget in (
                ("none (exact)", NO_BUDGET),
                (f"{BM25_MATCH_BUDGET:,}", BM25_MATCH_BUDGET),
                (f"{scaled:,} (scaled to 100k)", scaled),
            ):
                rankings = {
                    qid: doc_ranking(index.store, text, budget) for qid, text in dataset.queries.items()
                }
                ndcg = mean_metrics(dataset.qrels, rankings)["ndcg@10"]
                exact = ndcg if exact is None else exact
                table.add_row(dataset.name, f"{chunks:,}", name, f"{ndcg:.4f}", f"{ndcg - exact:+.4f}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--quality", action="store_true", help="also nDCG@10 on SciFact test and squad_dev")
    args = parser.parse_args()
    console.print(latency_table(args.sizes))
    if args.quality:
        console.print(quality_table())


if __name__ == "__main__":
    main()

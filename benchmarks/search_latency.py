"""Warm query latency of l2v-search: encode the query + search FAISS + join chunk rows from SQLite.

For each corpus size (default 1k, 10k, 100k chunks) a real index folder is built in a temporary directory:
a SQLite store (sqlite-utils schema, FTS5 table) holding real SciFact abstract texts, cycled to reach the
size, and a FAISS index of synthetic vectors (clustered Gaussians, L2-normalized: no model could embed 100k
chunks on this CPU in a benchmark run). Queries are real SciFact claims embedded by the real model on every
call, so the encode share of the latency is real; FAISS and SQLite shares are measured on synthetic vectors.

Rows: exact (`flat`) vs ANN (`ivf`, `hnsw`) per size, dense and hybrid mode, with recall@10 of the ANN index
against exact search (synthetic queries = perturbed corpus vectors). A last table times FAISS alone at
`--ann-size` vectors (default 1M): exact vs IVF, recall@10 and speed-up.

    python benchmarks/search_latency.py                            # default model, 1k/10k/100k + 1M ANN
    python benchmarks/search_latency.py --sizes 1000 --ann-size 0  # quick look
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from rich.console import Console
from rich.table import Table

from llm2vec_search.encoder import Encoder
from llm2vec_search.indexing.chunking import Chunk
from llm2vec_search.indexing.options import SearchOptions
from llm2vec_search.indexing.search import rank_queries
from llm2vec_search.indexing.store import FileRecord, Store
from llm2vec_search.indexing.vectors import VectorIndex

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "data" / "scifact"
CLUSTERS = 1000
NOISE = 0.6  # spread of points around their cluster centre, relative to the centre's unit length
RECALL_QUERIES = 500
console = Console(width=150)  # the tables keep their columns when printed to a file


def synthetic_vectors(count: int, dim: int, seed: int) -> np.ndarray:
    """Clustered unit vectors: real embeddings are not uniform on the sphere, and IVF relies on that."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CLUSTERS, dim), dtype=np.float32) / np.sqrt(dim)
    points = centres[rng.integers(0, CLUSTERS, count)]
    points += rng.standard_normal((count, dim), dtype=np.float32) * (NOISE / np.sqrt(dim))
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def perturbed_queries(vectors: np.ndarray, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picked = vectors[rng.integers(0, len(vectors), count)]
    picked = picked + rng.standard_normal(picked.shape, dtype=np.float32) * (0.3 / np.sqrt(vectors.shape[1]))
    return picked / np.linalg.norm(picked, axis=1, keepdims=True)


def recall_at_10(exact_ids: np.ndarray, ann_ids: np.ndarray) -> float:
    return float(np.mean([len(set(e) & set(a)) / len(e) for e, a in zip(exact_ids, ann_ids, strict=True)]))


def read_texts() -> tuple[list[str], list[str]]:
    """SciFact abstracts (chunk texts) and test claims (queries)."""
    if not SCIFACT.is_dir():
        sys.exit(f"error: {SCIFACT} is missing; this benchmark needs the shared SciFact data")
    with (SCIFACT / "corpus.jsonl").open() as handle:
        texts = [json.loads(line)["text"][:1200] for line in handle]
    with (SCIFACT / "queries_test.jsonl").open() as handle:
        queries = [json.loads(line)["text"] for line in handle]
    return texts, queries


def build_store(folder: Path, texts: list[str], count: int) -> Store:
    """`count` committed chunks, 20 per file, with FTS rows (the store's triggers fill FTS5)."""
    store = Store.open(folder, create=True)
    with store.transaction():
        for first in range(0, count, 20):
            path = f"docs/{first // 20:06d}.txt"
            store.begin_file(path, "text")
            rows = [
                Chunk(texts[(first + i) % len(texts)], 0, 1, 1, 1, "", path=path, ordinal=i)
                for i in range(min(20, count - first))
            ]
            store.insert_pending_chunks(rows)
            store.finish_files([FileRecord(path, "0" * 64, 0, 0, "text")])
        store.commit_pending_chunks()
    return store


def percentiles(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50)) * 1000, float(np.percentile(samples, 99)) * 1000


def embed_one_at_a_time(embed, texts: list[str]) -> tuple[np.ndarray, list[float]]:
    """(the vectors, seconds per text) of `embed(text)` on each text alone, after 3 that warm it up."""
    for text in texts[:3]:
        embed(text)
    vectors, samples = [], []
    for text in texts:
        began = time.perf_counter()
        vectors.append(embed(text))
        samples.append(time.perf_counter() - began)
    return np.stack(vectors), samples


def time_queries(store, vectors, encoder, queries, mode: str, repeats: int) -> list[float]:
    """p50/p99 in ms of one query at a time, fully answered (encode + FAISS + SQLite rows), then the p50 of
    each part: the encoder, and the search with its metadata join."""
    totals, encodes, searches = [], [], []
    for i in range(repeats):
        text = queries[i % len(queries)]
        began = time.perf_counter()
        vector = encoder.encode_queries([text])
        encoded = time.perf_counter()
        rank_queries(store, vectors, [text], vector, SearchOptions(k=10, mode=mode))
        done = time.perf_counter()
        totals.append(done - began)
        encodes.append(encoded - began)
        searches.append(done - encoded)
    return [*percentiles(totals), percentiles(encodes)[0], percentiles(searches)[0]]


def corpus_rows(encoder: Encoder, texts, queries, sizes, kinds, repeats) -> Table:
    table = Table(title=f"Warm query latency, k=10, {repeats} queries each (encode + search + rows)")
    columns = ("chunks", "index", "mode", "p50 ms", "p99 ms", "encode p50", "search+rows p50", "recall@10")
    for column in (*columns, "build s"):
        table.add_column(column, justify="right")
    for size in sizes:
        data = synthetic_vectors(size, encoder.dim, seed=size)
        probes = perturbed_queries(data, RECALL_QUERIES, seed=1)
        ids = np.arange(1, size + 1, dtype=np.int64)  # chunk ids start at 1 in SQLite
        with tempfile.TemporaryDirectory() as folder:
            store = build_store(Path(folder), texts, size)
            exact_ids = None
            for kind in kinds:
                began = time.perf_counter()
                vectors = VectorIndex.create(encoder.dim)
                vectors.add(ids, data)
                vectors.reshape(kind)
                built = time.perf_counter() - began
                found = vectors.search(probes, 10)[1]
                exact_ids = found if kind == "flat" else exact_ids
                recall = "exact" if kind == "flat" else f"{recall_at_10(exact_ids, found):.3f}"
                for mode in ("dense", "hybrid"):
                    timings = [
                        f"{ms:.1f}" for ms in time_queries(store, vectors, encoder, queries, mode, repeats)
                    ]
                    table.add_row(f"{size:,}", vectors.kind, mode, *timings, recall, f"{built:.1f}")
            store.close()
    return table


def timed_searches(vectors: VectorIndex, probes: np.ndarray) -> tuple[tuple[float, float], np.ndarray]:
    samples, found = [], []
    for probe in probes:
        start = time.perf_counter()
        found.append(vectors.search(probe[None, :], 10)[1][0])
        samples.append(time.perf_counter() - start)
    return percentiles(samples), np.array(found)


def ann_rows(dim: int, size: int, queries: int) -> Table:
    """FAISS alone at `size` vectors, one query at a time: exact vs IVF (the `auto` choice at this size) at
    its default nprobe and at others, to show the speed/recall trade-off."""
    data = synthetic_vectors(size, dim, seed=7)
    probes = perturbed_queries(data, queries, seed=2)
    ids = np.arange(size, dtype=np.int64)
    table = Table(title=f"FAISS only at {size:,} vectors (dim {dim}), {queries} single queries")
    for column in ("index", "nprobe", "p50 ms", "p99 ms", "recall@10", "speed-up (p50)", "build s"):
        table.add_column(column, justify="right")
    began = time.perf_counter()
    vectors = VectorIndex.create(dim)
    vectors.add(ids, data)
    built = time.perf_counter() - began
    (exact_p50, exact_p99), exact_ids = timed_searches(vectors, probes)
    table.add_row("flat", "", f"{exact_p50:.2f}", f"{exact_p99:.2f}", "exact", "1.0×", f"{built:.1f}")
    began = time.perf_counter()
    vectors.reshape("ivf")
    built = time.perf_counter() - began
    ivf = faiss.extract_index_ivf(vectors.index)
    default_nprobe = ivf.nprobe
    for nprobe in sorted({default_nprobe // 2, default_nprobe, default_nprobe * 2, default_nprobe * 4}):
        ivf.nprobe = nprobe
        (p50, p99), found = timed_searches(vectors, probes)
        label = f"{nprobe}" + (" (default)" if nprobe == default_nprobe else "")
        table.add_row(
            f"ivf{ivf.nlist}",
            label,
            f"{p50:.2f}",
            f"{p99:.2f}",
            f"{recall_at_10(exact_ids, found):.3f}",
            f"{exact_p50 / p50:.1f}×",
            f"{built:.1f}",
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="default")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--kinds", nargs="+", default=["flat", "ivf", "hnsw"])
    parser.add_argument("--queries", type=int, default=200, help="timed queries per row")
    parser.add_argument("--ann-size", type=int, default=1_000_000, help="0 skips the FAISS-only table")
    args = parser.parse_args()

    texts, queries = read_texts()
    # No query cache: queries cycle, and every one should pay the model, as a query never seen before does.
    encoder = Encoder.from_pretrained(args.model, device="cpu", query_cache_size=0)
    encoder.encode_queries(queries[:8])  # warm-up
    console.print(corpus_rows(encoder, texts, queries, args.sizes, args.kinds, args.queries))
    if args.ann_size:
        console.print(ann_rows(encoder.dim, args.ann_size, RECALL_QUERIES))


if __name__ == "__main__":
    main()

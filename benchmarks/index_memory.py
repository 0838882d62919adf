"""Memory per million vectors of each `--index-type`, measured on random unit vectors of the default model's
dimension (384, its distilled head's width): cheap, and the memory of these structures does not depend on
what the vectors mean.

Each kind is built in its own forked process, the way an index builds it (`VectorIndex.reshape` from
`--count` vectors: IVF trained on a sample, with the hash-table direct map that removals need); then another
`--count` vectors are added, and what that costs — resident memory (RSS) and the size `faiss.write_index`
writes — divided by the count is the memory per vector, free of the one-off parts (IVF's coarse centroids:
4·sqrt(n) lists of 2.5 KB, 10 MB at a million vectors; PQ's 0.6 MB codebook). GB here are 2^30 bytes.

    python benchmarks/index_memory.py                      # 20,000 + 20,000 vectors
    python benchmarks/index_memory.py --count 500000
"""

import argparse
import gc
import multiprocessing
import time

import faiss
import numpy as np
import psutil

from llm2vec_search.indexing.vectors import INDEX_TYPES, VectorIndex

DIM = 384  # the default model's vectors: its distilled head's width (Gemma 3 270M's hidden size is 640)


def random_unit(count: int, dim: int, seed: int) -> np.ndarray:
    data = np.random.default_rng(seed).standard_normal((count, dim), dtype=np.float32)
    return data / np.linalg.norm(data, axis=1, keepdims=True)


def footprint(vectors: VectorIndex) -> tuple[int, int]:
    gc.collect()
    return psutil.Process().memory_info().rss, faiss.serialize_index(vectors.index).nbytes


def measure(kind: str, count: int, dim: int, results) -> None:
    """In a forked process: build `kind` from `count` vectors, add `count` more; report the added cost."""
    started = time.perf_counter()
    vectors = VectorIndex.create(dim)
    vectors.add(np.arange(count), random_unit(count, dim, 0))
    vectors.reshape(kind)
    build_seconds = time.perf_counter() - started
    more = random_unit(count, dim, 1)
    rss_before, size_before = footprint(vectors)
    vectors.add(np.arange(count, 2 * count), more)
    rss_after, size_after = footprint(vectors)
    results.put((kind, vectors.kind, rss_after - rss_before, size_after - size_before, build_seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=DIM)
    parser.add_argument("--types", nargs="+", default=[k for k in INDEX_TYPES if k != "auto"])
    args = parser.parse_args()
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    print(
        f"{args.dim}-dimensional vectors, {args.count:,} + {args.count:,} each; memory per million vectors:"
    )
    print(
        f"{'index type':<10} {'built':>7} {'RSS':>9} {'file':>9} {'bytes/vector':>13} {'build s':>8}",
        flush=True,
    )
    for kind in args.types:
        child = context.Process(target=measure, args=(kind, args.count, args.dim, results))
        child.start()
        name, built, rss, size, seconds = results.get()
        child.join()
        per_million = 1e6 / args.count / 2**30
        row = f"{name:<10} {built:>7} {rss * per_million:>7.2f}GB {size * per_million:>7.2f}GB"
        print(f"{row} {size / args.count:>13.0f} {seconds:>8.1f}", flush=True)


if __name__ == "__main__":
    main()

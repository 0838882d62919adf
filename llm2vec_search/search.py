"""Search over an index: dense (FAISS), BM25 (SQLite FTS5) and hybrid (reciprocal rank fusion of the two).

Everything here only reads the store and the vectors. `Hit` is what every front end (CLI, HTTP server, eval)
receives.
"""

import importlib.util
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from fnmatch import fnmatchcase
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

from .errors import L2VError

if TYPE_CHECKING:
    from .indexing.store import ChunkRow, Store
    from .indexing.vectors import VectorIndex

SEARCH_MODES = ("dense", "bm25", "hybrid")
# The mode used when none is given (CLI, library, server), chosen by measured SciFact test nDCG@10 with
# the shipped default model: BM25 0.686, hybrid 0.571, dense 0.380 (README, Quality). Revisit as it improves.
DEFAULT_MODE = "bm25"
RRF_K = 60
# Weight of the dense list against BM25's (1.0) in hybrid fusion.
DEFAULT_DENSE_WEIGHT = 1.0
# More hits than anyone reads; also keeps k inside what SQLite and FAISS accept (a 64-bit k overflows them).
MAX_K = 10_000
# Each retriever's list is taken this deep (at least k) before fusion.
FUSION_DEPTH = 50
# With a path filter, FAISS is asked for this many times k first, then more until enough hits pass the filter.
FILTER_OVERFETCH = 10
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class Hit:
    """One ranked chunk; `dense_score`/`bm25_score` are None when that retriever did not return the chunk."""

    rank: int
    score: float
    chunk_id: int
    path: str
    start_line: int
    end_line: int
    start_char: int
    end_char: int
    heading: str
    text: str
    dense_score: float | None
    bm25_score: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def path_matcher(path_glob: str | None) -> Callable[[str], bool] | None:
    """fnmatch-style filter on a stored path; a glob without a leading "/" may match any tail of the path.

    So "*.md" matches every Markdown file and "docs/*.md" matches "/home/me/project/docs/intro.md".
    """
    if not path_glob:
        return None

    def matches(path: str) -> bool:
        if fnmatchcase(path, path_glob):
            return True
        if path_glob.startswith("/"):
            return False
        parts = path.split("/")
        return any(fnmatchcase("/".join(parts[i:]), path_glob) for i in range(1, len(parts)))

    return matches


@cache
def english_stopwords() -> frozenset[str]:
    """Lucene's English stop set as the `bm25s` package keeps it. Its module is loaded on its own, since
    importing the `bm25s` package would pull in SciPy (~0.7 s) for a list of 33 words."""
    package = importlib.util.find_spec("bm25s")
    if package is None or not package.submodule_search_locations:
        raise L2VError("the bm25s package is missing; reinstall l2v-search")
    location = f"{package.submodule_search_locations[0]}/stopwords.py"
    spec = importlib.util.spec_from_file_location("_bm25s_stopwords", location)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return frozenset(module.STOPWORDS_EN)


def fts_query(text: str, stopwords: frozenset[str] | None = None) -> str:
    """The user's words, less English stopwords, as quoted FTS5 terms OR-ed together (so no FTS syntax in
    the text can cause an error). Stopwords match nearly every chunk: in a long natural-language query
    they add noise to the ranking and most of its cost. A query of stopwords only keeps them all."""
    stopwords = english_stopwords() if stopwords is None else stopwords
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))
    kept = [word for word in words if word not in stopwords] or words
    return " OR ".join(f'"{word}"' for word in kept)


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]], k: int = RRF_K, weights: Sequence[float] | None = None
) -> dict[int, float]:
    """score(id) = Σ over rankings of weight / (k + rank), rank counted from 1 (weights default to 1)."""
    scores: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights or [1.0] * len(rankings), strict=True):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return scores


def check_settings(k: int, mode: str) -> None:
    """Reject a bad k or mode (before anything is loaded, in the CLI)."""
    if mode not in SEARCH_MODES:
        raise L2VError(f"unknown search mode {mode!r}; choose one of {', '.join(SEARCH_MODES)}")
    if not 1 <= k <= MAX_K:
        raise L2VError(f"k must be from 1 to {MAX_K}, got {k}")


def check_query(text: str, mode: str, k: int) -> None:
    check_settings(k, mode)
    if not isinstance(text, str) or not text.strip():
        raise L2VError("the query is empty")


def check_dense_weight(weight: float) -> None:
    if not 0 <= weight <= 100:
        raise L2VError(f"dense weight must be between 0 and 100, got {weight}")


def dense_ranking(
    store: "Store", vectors: "VectorIndex", query_vector: np.ndarray, depth: int, matches=None
) -> list[tuple["ChunkRow", float]]:
    """Nearest committed chunks by cosine, best first; over-fetches when a path filter drops candidates."""
    fetch = depth * FILTER_OVERFETCH if matches else depth
    while True:
        scores, ids = vectors.search(query_vector[None, :], fetch)
        pairs = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        rows = store.chunks_by_id([i for i, _ in pairs])
        found = [(rows[i], s) for i, s in pairs if i in rows and (matches is None or matches(rows[i].path))]
        if len(found) >= depth or fetch >= vectors.count:
            return found[:depth]
        fetch = min(fetch * 4, vectors.count)


def bm25_ranking(store: "Store", text: str, depth: int, matches=None) -> list[tuple["ChunkRow", float]]:
    query = fts_query(text)
    return store.bm25(query, depth, matches) if query else []


def to_hit(rank: int, score: float, row: "ChunkRow", dense: float | None, bm25: float | None) -> Hit:
    return Hit(
        rank=rank,
        score=score,
        chunk_id=row.id,
        path=row.path,
        start_line=row.start_line,
        end_line=row.end_line,
        start_char=row.start_char,
        end_char=row.end_char,
        heading=row.heading,
        text=row.text,
        dense_score=dense,
        bm25_score=bm25,
    )


def rank_hits(
    dense: list[tuple["ChunkRow", float]] | None,
    bm25: list[tuple["ChunkRow", float]] | None,
    k: int,
    dense_weight: float = DEFAULT_DENSE_WEIGHT,
) -> list[Hit]:
    """Turn one retriever's list into hits, or fuse both with weighted RRF when both are given."""
    dense_scores = {row.id: score for row, score in dense or []}
    bm25_scores = {row.id: score for row, score in bm25 or []}
    rows = {row.id: row for row, _ in [*(dense or []), *(bm25 or [])]}
    if dense is not None and bm25 is not None:
        fused = reciprocal_rank_fusion(
            [[r.id for r, _ in dense], [r.id for r, _ in bm25]], weights=[dense_weight, 1.0]
        )
        order = sorted(fused, key=lambda i: -fused[i])[:k]
        scores = fused
    else:
        only = dense if dense is not None else bm25
        order = [row.id for row, _ in only[:k]]
        scores = dense_scores if dense is not None else bm25_scores
    return [
        to_hit(rank, scores[i], rows[i], dense_scores.get(i), bm25_scores.get(i))
        for rank, i in enumerate(order, start=1)
    ]


def search_many(
    store: "Store",
    vectors: "VectorIndex | None",
    encode_queries: Callable[[list[str]], np.ndarray],
    texts: Sequence[str],
    k: int = 10,
    mode: str = DEFAULT_MODE,
    path_glob: str | None = None,
    dense_weight: float = DEFAULT_DENSE_WEIGHT,
) -> list[list[Hit]]:
    """Run `mode` search for each text; queries are embedded in one batch. BM25 needs no `vectors`.
    `dense_weight`: the dense list's weight against BM25's 1 in hybrid fusion."""
    for text in texts:
        check_query(text, mode, k)
    check_dense_weight(dense_weight)
    matches = path_matcher(path_glob)
    depth = k if mode != "hybrid" else max(k, FUSION_DEPTH)
    query_vectors = encode_queries(list(texts)) if vectors is not None and vectors.count else None
    results = []
    for i, text in enumerate(texts):
        dense = None
        if mode != "bm25":
            dense = (
                dense_ranking(store, vectors, query_vectors[i], depth, matches)
                if query_vectors is not None
                else []
            )
        bm25 = bm25_ranking(store, text, depth, matches) if mode != "dense" else None
        results.append(rank_hits(dense, bm25, k, dense_weight))
    return results

"""Ranking over an index's two halves: dense (FAISS), BM25 (SQLite FTS5) and hybrid (the weighted cosine plus
BM25 over the query's IDF mass).

`Index.search_many` is the way in: it checks the query texts (the `SearchOptions` were checked when built),
brings the query vectors, and calls `rank_queries`. Everything here only reads the store and the vectors.
`Hit` is what every front end (CLI, HTTP and MCP servers, evaluation) receives: a ranked stored `Chunk` with
its scores, and `Hit.to_dict` is how every one of them serializes it.
"""

import importlib.util
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

from ..errors import L2VError
from .chunking import Chunk
from .options import SearchOptions

if TYPE_CHECKING:
    from .store import Store
    from .vectors import VectorIndex

# Each retriever's list is taken this deep (at least k) before fusion.
FUSION_DEPTH = 50
# With a path filter, FAISS is asked for this many times k first, then more until enough hits pass the filter.
FILTER_OVERFETCH = 10
# BM25 costs one score per chunk that holds any query word. Past this many chunks (summed over the words),
# only chunks with one of the rarer words are ranked (`bm25_ranking`); below it, BM25 is exact.
BM25_MATCH_BUDGET = 20_000
_WORD = re.compile(r"\w+", re.UNICODE)


# A stored chunk's fields as every front end returns them (a hit's, and MCP's `get_chunk`).
CHUNK_FIELDS = ("chunk_id", "path", "start_line", "end_line", "start_char", "end_char", "heading", "text")
# A hit's fields as the CLI's JSON, the HTTP API and the MCP search tool return them.
HIT_FIELDS = ("rank", "score", *CHUNK_FIELDS, "dense_score", "bm25_score")


def chunk_dict(chunk: Chunk) -> dict:
    """A stored chunk, flat, as `CHUNK_FIELDS` name its fields."""
    return {name: getattr(chunk, "id" if name == "chunk_id" else name) for name in CHUNK_FIELDS}


class _FromChunk:
    """A field of the hit's chunk read through the hit: `hit.path` is `hit.chunk.path`."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.field = "id" if name == "chunk_id" else name

    def __get__(self, hit: "Hit | None", owner: type | None = None):
        return self if hit is None else getattr(hit.chunk, self.field)


@dataclass
class Hit:
    """One ranked chunk; `dense_score`/`bm25_score` are None when that retriever did not return the chunk."""

    rank: int
    score: float
    chunk: Chunk
    dense_score: float | None
    bm25_score: float | None

    chunk_id = _FromChunk()
    path = _FromChunk()
    start_line = _FromChunk()
    end_line = _FromChunk()
    start_char = _FromChunk()
    end_char = _FromChunk()
    heading = _FromChunk()
    text = _FromChunk()

    def to_dict(self) -> dict:
        """The hit as every front end returns it (CLI JSON, HTTP, MCP): flat, the chunk's fields inline."""
        return {name: getattr(self, name) for name in HIT_FIELDS}

    @classmethod
    def from_dict(cls, fields: dict) -> "Hit":
        """The inverse of `to_dict`: a hit as a server returned it (a one-shot query answered by `serve`)."""
        chunk = Chunk(
            **{name: fields[name] for name in ("text", "start_char", "end_char", "start_line", "end_line")},
            heading=fields["heading"],
            id=fields["chunk_id"],
            path=fields["path"],
        )
        return cls(fields["rank"], fields["score"], chunk, fields["dense_score"], fields["bm25_score"])


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


def query_words(text: str, stopwords: frozenset[str] | None = None, distinct: bool = True) -> list[str]:
    """The user's distinct lowercase words less English stopwords. Stopwords match nearly every chunk: in a
    long natural-language query they add noise to the ranking and most of its cost. A query of stopwords
    only keeps them all. Each word counts once: scoring a repeated word per occurrence, as Lucene does, ranked
    worse on every set measured, most on long questions (`benchmarks/bm25_parity.py`); `distinct=False`
    keeps the repeats."""
    stopwords = english_stopwords() if stopwords is None else stopwords
    words = [w.lower() for w in _WORD.findall(text)]
    words = list(dict.fromkeys(words)) if distinct else words
    return [word for word in words if word not in stopwords] or words


def fts_query(words: Sequence[str]) -> str:
    """Words as quoted FTS5 terms OR-ed together, so no FTS syntax in the user's text can cause an error."""
    return " OR ".join(f'"{word}"' for word in words)


def split_by_match_budget(counts: dict[str, int], budget: int) -> tuple[list[str], list[str]]:
    """(rare, common) words by their chunk counts: every word is rare when the counts sum to at most
    `budget`; past it, rare words are the rarest summing to at most a quarter of it (at least one), so that
    ranking their chunks twice costs less than ranking everything once."""
    if sum(counts.values()) <= budget:
        return list(counts), []
    rare, total = [], 0
    for word in sorted(counts, key=counts.__getitem__):
        if rare and total + counts[word] > budget // 4:
            break
        rare.append(word)
        total += counts[word]
    return rare, [word for word in counts if word not in rare]


def idf(chunks_with_word: int, chunks: int) -> float:
    """A word's IDF as FTS5's bm25() takes it: log((N − n + 0.5) / (n + 0.5)), floored at 1e-6."""
    return max(math.log((chunks - chunks_with_word + 0.5) / (chunks_with_word + 0.5)), 1e-6)


def hybrid_scores(
    dense: Iterable[tuple[int, float]],
    bm25: Iterable[tuple[int, float]],
    dense_weight: float,
    idf_mass: float,
) -> dict[int, float]:
    """score(id) = dense_weight × cosine + BM25 / the query's IDF mass, a list the id is absent from adding 0.

    BM25 over the IDF mass (the sum of the query words' IDFs, about what a chunk holding each word once
    scores) is about the share of the query a chunk matches. Scaling BM25 by its list's best score instead
    gave a chunk matching one common word of a long question BM25's full weight, which no dense score could
    overturn: a paraphrase found by the dense half lost to a stray word match. On the dev sets, at weight
    0.25 and 50-deep lists, this fusion beat that one (`benchmarks/fusion.py`, docs/quality.md)."""
    fused = {item: dense_weight * score for item, score in dense}
    for item, score in bm25:
        fused[item] = fused.get(item, 0.0) + score / idf_mass
    return fused


def dense_ranking(
    store: "Store", vectors: "VectorIndex", query_vector: np.ndarray, depth: int, matches=None
) -> list[tuple[Chunk, float]]:
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


def word_chunk_counts(store: "Store", words: Sequence[str]) -> dict[str, int]:
    """How many chunks hold each word: its IDF, and what ranking it would cost (`split_by_match_budget`)."""
    return {word: store.match_count(fts_query([word])) for word in words}


@dataclass
class BM25Ranking:
    """BM25's best chunks for a query, and the query's IDF mass (Σ of its words' IDFs), which hybrid fusion
    divides BM25 by (`hybrid_scores`)."""

    hits: list[tuple[Chunk, float]]
    idf_mass: float


def bm25_ranking(
    store: "Store", text: str, depth: int, matches=None, match_budget: int = BM25_MATCH_BUDGET
) -> BM25Ranking:
    """BM25 over the query's words. When they are in more than `match_budget` chunks, only chunks holding a
    rare word are ranked, still scored on every word: Lucene's common-terms query. FTS5 scores every chunk
    any word is in, so common words set the cost while adding little to the ranking (their IDF is low).
    Each word's chunks are counted once (cheaper than ranking them) for both the budget and the IDFs."""
    words = query_words(text)
    if not words:
        return BM25Ranking([], 1.0)
    counts = word_chunk_counts(store, words)
    chunks = store.fts_count()
    idf_mass = sum(idf(count, chunks) for count in counts.values())
    rare, common = split_by_match_budget(counts, match_budget)
    hits = store.bm25(fts_query(words), depth, matches, matching=fts_query(rare) if common else None)
    return BM25Ranking(hits, idf_mass)


def rank_hits(
    dense: list[tuple[Chunk, float]] | None, bm25: BM25Ranking | None, k: int, dense_weight: float
) -> list[Hit]:
    """Turn one retriever's list into hits, or fuse both (`hybrid_scores`) when both are given."""
    bm25_hits = bm25.hits if bm25 is not None else None
    dense_scores = {row.id: score for row, score in dense or []}
    bm25_scores = {row.id: score for row, score in bm25_hits or []}
    rows = {row.id: row for row, _ in [*(dense or []), *(bm25_hits or [])]}
    if dense is not None and bm25 is not None:
        scores = hybrid_scores(dense_scores.items(), bm25_scores.items(), dense_weight, bm25.idf_mass)
        order = sorted(scores, key=lambda i: -scores[i])[:k]
    else:
        only = dense if dense is not None else bm25_hits
        order = [row.id for row, _ in only[:k]]
        scores = dense_scores if dense is not None else bm25_scores
    return [
        Hit(rank, scores[i], rows[i], dense_scores.get(i), bm25_scores.get(i))
        for rank, i in enumerate(order, start=1)
    ]


def rank_queries(
    store: "Store",
    vectors: "VectorIndex | None",
    texts: Sequence[str],
    query_vectors: np.ndarray | None,
    options: SearchOptions,
) -> list[list[Hit]]:
    """Rank each text's hits under `options`; `query_vectors` (one row per text) serve dense ranking, which
    finds nothing without them or without vectors. Checked texts only: `Index.search_many` checks them."""
    k, mode = options.k, options.mode
    matches = path_matcher(options.path_glob)
    depth = k if mode != "hybrid" else max(k, FUSION_DEPTH)
    can_rank_dense = query_vectors is not None and vectors is not None and vectors.count > 0
    results = []
    for i, text in enumerate(texts):
        dense = None
        if mode != "bm25":
            dense = dense_ranking(store, vectors, query_vectors[i], depth, matches) if can_rank_dense else []
        bm25 = bm25_ranking(store, text, depth, matches) if mode != "dense" else None
        results.append(rank_hits(dense, bm25, k, options.dense_weight))
    return results

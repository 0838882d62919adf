"""BEIR retrieval evaluation through the same `Index` users search: chunk, embed, store, query, score.

The corpus index is cached under the model cache (`<cache>/eval/<dataset>-<key>/`), keyed by everything that
changes its content, so rerunning with another `--mode` reuses the embedded corpus, and an interrupted run
resumes where it stopped. A document's score is its best chunk's.
"""

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..encoder import Encoder
from ..encoder.models import cache_dir
from ..indexing.chunking import DEFAULT_CHUNK_TOKENS, DEFAULT_OVERLAP_TOKENS
from ..indexing.index import Index
from ..indexing.index_encoder import SPECIAL_TOKEN_ROOM
from ..indexing.options import SearchOptions
from ..indexing.search import FUSION_DEPTH
from .beir import BeirDataset
from .metrics import mean_metrics

DOC_DEPTH = 100  # documents ranked per query: enough for Recall@100
DOC_BATCH = 256  # documents per index update, so progress is visible and an interrupted run resumes
QUERY_BATCH = 64
INDEX_FORMAT = 1  # bump when the eval index layout changes, so old cache entries are not reused

# (phase, done, total): phase is "index" (documents) or "search" (queries)
ProgressCallback = Callable[[str, int, int], None]


@dataclass
class RetrievalResult:
    dataset: str
    split: str
    mode: str
    chunk_tokens: int
    overlap_tokens: int
    metrics: dict[str, float]
    queries: int
    docs: int
    chunks: int
    chunks_embedded: int  # 0 when the cached index was reused as it was
    index_seconds: float
    search_seconds: float
    index_path: str

    def to_dict(self) -> dict:
        return asdict(self)


class LexicalOnlyEncoder:
    """Stands in for the model when only BM25 is evaluated: the model's tokenizer (so chunks are the same as
    the model's) but no embedding, which would take the CPU most of an hour for nothing BM25 uses."""

    dim = 1
    pooling = "none"

    def __init__(self, encoder: Encoder) -> None:
        self.tokenizer = encoder.tokenizer
        self.max_length = encoder.max_length
        self.name = f"{encoder.name} (tokenizer only)"
        self.fingerprint = f"lexical-{encoder.fingerprint}"

    def encode(self, texts: Sequence[str], **_) -> np.ndarray:
        return np.zeros((len(texts), self.dim), dtype=np.float32)


def eval_index_path(
    dataset: BeirDataset, encoder: Encoder | LexicalOnlyEncoder, chunk_tokens: int, overlap_tokens: int
) -> Path:
    """Where the corpus index for these settings is cached; the name says what, the hash says exactly."""
    key = json.dumps(
        [
            INDEX_FORMAT,
            encoder.fingerprint,
            encoder.max_length,
            dataset.corpus_hash,
            chunk_tokens,
            overlap_tokens,
        ]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / "eval" / f"{dataset.name}-{digest}"


def build_eval_index(
    dataset: BeirDataset,
    encoder: Encoder | LexicalOnlyEncoder,
    chunk_tokens: int,
    overlap_tokens: int,
    progress: ProgressCallback | None = None,
) -> tuple[Index, int]:
    """Open (or create) the cached corpus index and bring it up to date; returns it and chunks embedded."""
    path = eval_index_path(dataset, encoder, chunk_tokens, overlap_tokens)
    index = Index.open(
        path,
        model=encoder,
        create=True,
        chunk_tokens=chunk_tokens,
        overlap_tokens=overlap_tokens,
        index_type="flat",  # exact search, as in the published reference figures
    )
    embedded = 0
    documents = list(dataset.documents())
    try:
        for start in range(0, len(documents), DOC_BATCH):
            batch = documents[start : start + DOC_BATCH]
            embedded += index.update_documents(batch).chunks_added
            if progress:
                progress("index", start + len(batch), len(documents))
    except BaseException:
        index.close()
        raise
    return index, embedded


def rank_documents(
    index: Index,
    queries: dict[str, str],
    options: SearchOptions,
    depth: int = DOC_DEPTH,
    progress: ProgressCallback | None = None,
    query_vectors: dict[str, np.ndarray] | None = None,
) -> dict[str, list[str]]:
    """query id → doc ids, best first: chunks searched (as `options` say, but for `k`) deep enough to yield
    `depth` distinct documents.
    `query_vectors` (query id → vector), when given, are used instead of embedding the queries.

    The first pass asks for twice the average chunks per document times `depth`; queries that still come up
    short (a few documents with many matching chunks) are searched again, four times deeper each pass.
    Hybrid search fuses lists as deep as `k` asks (at least `FUSION_DEPTH`), and deeper lists reorder the
    top; so a hybrid ranking starts with the documents of a `FUSION_DEPTH`-chunk search, whose order is what
    every search for up to `FUSION_DEPTH` hits returns, and only the documents below them (for Recall@100)
    come from the deep search.
    """
    status = index.status()
    total_chunks = max(status.chunks, 1)
    k = min(total_chunks, max(depth, math.ceil(2 * depth * status.chunks / max(status.files, 1))))
    head_k = min(total_chunks, FUSION_DEPTH) if options.mode == "hybrid" else 0
    heads: dict[str, list[str]] = {}
    rankings: dict[str, list[str]] = {}
    pending = list(queries)
    first_pass = True
    while pending:
        short = []
        for start in range(0, len(pending), QUERY_BATCH):
            batch = pending[start : start + QUERY_BATCH]
            texts = [queries[q] for q in batch]
            vectors = np.stack([query_vectors[q] for q in batch]) if query_vectors else None
            if first_pass and head_k:
                if vectors is None:  # embedded once for both searches
                    vectors = index.query_encoder.encode_queries(texts)
                results = index.search_many(texts, options.replace(k=head_k), query_vectors=vectors)
                heads.update((q, [hit.path for hit in hits]) for q, hits in zip(batch, results, strict=True))
            results = index.search_many(texts, options.replace(k=k), query_vectors=vectors)
            for query_id, hits in zip(batch, results, strict=True):
                docs = list(dict.fromkeys([*heads.get(query_id, []), *(hit.path for hit in hits)]))
                rankings[query_id] = docs[:depth]
                if len(docs) < depth and len(hits) >= k and k < total_chunks:
                    short.append(query_id)
            if progress and first_pass:
                progress("search", start + len(batch), len(pending))
        pending, k, first_pass = short, min(total_chunks, k * 4), False
    return rankings


def eval_chunking(
    max_length: int, chunk_tokens: int | None = None, overlap_tokens: int | None = None
) -> tuple[int, int]:
    """The chunk and overlap sizes an evaluation uses for a model window of `max_length` tokens."""
    # The default chunk shrinks to fit a short model window (e.g. --max-length 256) rather than fail.
    chunk_tokens = chunk_tokens or min(DEFAULT_CHUNK_TOKENS, max_length - SPECIAL_TOKEN_ROOM)
    # 32 for 256-token chunks, as the index's default; smaller chunks get a proportionally smaller overlap.
    overlap_tokens = (
        min(DEFAULT_OVERLAP_TOKENS, chunk_tokens // 8) if overlap_tokens is None else overlap_tokens
    )
    return chunk_tokens, overlap_tokens


def run_retrieval(
    dataset: BeirDataset,
    encoder: Encoder,
    options: SearchOptions = SearchOptions(),
    chunk_tokens: int | None = None,
    overlap_tokens: int | None = None,
    progress: ProgressCallback | None = None,
    query_vectors: dict[str, np.ndarray] | None = None,
) -> RetrievalResult:
    """Index the corpus (or reuse the cached index), search every judged query, and score the rankings
    (`options` and `query_vectors` as in `rank_documents`)."""
    chunk_tokens, overlap_tokens = eval_chunking(encoder.max_length, chunk_tokens, overlap_tokens)
    mode = options.mode
    indexing_encoder = LexicalOnlyEncoder(encoder) if mode == "bm25" else encoder
    started = time.perf_counter()
    index, embedded = build_eval_index(dataset, indexing_encoder, chunk_tokens, overlap_tokens, progress)
    with index:
        index_seconds = time.perf_counter() - started
        status = index.status()
        started = time.perf_counter()
        rankings = rank_documents(
            index, dataset.queries, options, progress=progress, query_vectors=query_vectors
        )
        search_seconds = time.perf_counter() - started
    return RetrievalResult(
        dataset=dataset.name,
        split=dataset.split,
        mode=mode,
        chunk_tokens=chunk_tokens,
        overlap_tokens=overlap_tokens,
        metrics=mean_metrics(dataset.qrels, rankings),
        queries=len(dataset.queries),
        docs=status.files,
        chunks=status.chunks,
        chunks_embedded=0 if mode == "bm25" else embedded,
        index_seconds=round(index_seconds, 2),
        search_seconds=round(search_seconds, 2),
        index_path=str(index.path),
    )


__all__ = [
    "LexicalOnlyEncoder",
    "RetrievalResult",
    "build_eval_index",
    "eval_index_path",
    "rank_documents",
    "run_retrieval",
]

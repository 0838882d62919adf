"""What the server serves: indexes loaded once, one encoder and one micro-batcher per distinct model.

Reads of one index run one at a time (a lock: a reload swaps its SQLite and FAISS objects), but the query
embedding happens before, outside that lock, in the model's batcher, so concurrent searches share passes.
The HTTP server and the MCP server are both layers over `Backend`.
"""

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import anyio.to_thread
import numpy as np

from ..errors import L2VError
from ..indexing.options import SearchOptions, check_text
from .batching import Embedded, MicroBatcher

log = logging.getLogger(__name__)


@dataclass
class BatchSettings:
    batching: bool = True
    max_batch: int = 64
    wait_ms: float = 5.0


@dataclass
class ServedModel:
    """An encoder shared by every index built with it, and the batcher that owns its forward passes; searches
    go through the model's query model and its own batcher when `index` built one that is faster here."""

    encoder: object  # llm2vec_search.encoder.Encoder (imported lazily)
    batcher: MicroBatcher
    query_batcher: MicroBatcher | None = None

    async def embed(self, texts: Sequence[str], instruction: str | None = None) -> Embedded:
        return await asyncio.wrap_future(self.batcher.submit(texts, instruction))

    async def embed_query(self, query: str) -> np.ndarray:
        """One search query's vector, with the model's query instruction."""
        batcher = self.query_batcher or self.batcher
        embedded = batcher.submit([query], self.encoder.query_instruction)
        return (await asyncio.wrap_future(embedded)).vectors[0]

    def describe(self, public: bool = False) -> dict:
        """The model and its batching counters; `public` (for a path that needs no API key) leaves out its
        name, which may be a path on this machine."""
        return {
            **({} if public else {"model": self.encoder.name}),
            "fingerprint": self.encoder.fingerprint,
            "enabled": self.batcher.batching,
            **self.batcher.stats.to_dict(),
            "queries": "query model" if self.query_batcher else "full model",
            **({"query_batcher": self.query_batcher.stats.to_dict()} if self.query_batcher else {}),
        }


@dataclass
class ServedIndex:
    """An open index and the model its vectors come from."""

    name: str
    index: object  # llm2vec_search.indexing.Index
    model: ServedModel | None = None  # None until first needed when the backend loads models lazily
    lock: threading.Lock = field(default_factory=threading.Lock)

    def search(
        self,
        query: str,
        embedded_by: ServedModel | None,
        vector: np.ndarray | None,
        options: SearchOptions,
    ) -> list:
        """Search with a query vector that `embedded_by` made beforehand (both None for BM25)."""
        with self.lock:
            self.index.refresh()  # now, so that the check below holds for the index searched
            if embedded_by is not None and embedded_by.encoder.fingerprint != self.fingerprint():
                raise L2VError(
                    f"index '{self.name}' was just rebuilt with another model; send the search again"
                )
            return self.index.search(query, options, query_vector=vector)

    def fingerprint(self) -> str:
        """The fingerprint of the model the index on disk was built with (as last re-read)."""
        return self.index.settings.fingerprint

    def describe(self) -> dict:
        with self.lock:
            status = self.index.status()
        return {
            "name": self.name,
            "files": status.files,
            "chunks": status.chunks,
            "model": status.model,
            "dim": status.dim,
            "size": status.size_bytes,
        }


def encode_with_token_counts(encoder, texts: list[str], instruction: str | None) -> Embedded:
    """Runs on the batcher's worker thread, so the tokenizer is never used by two threads at once."""
    tokens = np.array([len(item.ids) for item in encoder.tokenize(texts, instruction)])
    return Embedded(encoder.encode(texts, instruction=instruction, cache=True), tokens)


def encode_queries_with_token_counts(query_encoder, texts: list[str], instruction: str | None) -> Embedded:
    """`encode_with_token_counts` for a query model (`encoder.onnx_query`), which always adds its model's
    query instruction: the one `embed_query` passes."""
    tokens = np.array([len(item.ids) for item in query_encoder.tokenize(texts)])
    return Embedded(query_encoder.encode_queries(texts), tokens)


class UnknownIndex(L2VError):
    """A request named an index this server does not serve (HTTP 404)."""


class UnknownModel(L2VError):
    """/v1/embeddings named a model this server does not serve (HTTP 404, OpenAI's `model_not_found`)."""


class Backend:
    """Opens each named index once; indexes of the same model share one encoder and its batcher.

    With `lazy_models` a model loads when a search first needs it, so a client that only runs BM25 searches
    never loads one (the MCP server); otherwise every index's model loads up front (the HTTP server).
    """

    def __init__(
        self,
        settings: BatchSettings,
        lazy_models: bool = False,
        model: str | None = None,
        onnx_queries: bool = True,
    ) -> None:
        self.settings = settings
        self.lazy_models = lazy_models
        self.model_spec = model
        self.onnx_queries = onnx_queries  # searches through a model's query model where it has one
        self.indexes: dict[str, ServedIndex] = {}
        self.models: dict[str, ServedModel] = {}
        self._loading = threading.Lock()

    @classmethod
    def load(
        cls,
        names: Sequence[str],
        index_dir: Path | None,
        settings: BatchSettings,
        lazy_models: bool = False,
        model: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
    ) -> "Backend":
        """Open every index (a name, or a folder served under its own name); `model` is a spec to load
        instead of the one each index records (it must give the same fingerprint); `device`/`dtype`: where
        models run."""
        import faiss

        from ..indexing import Index

        # One query at a time gains nothing from FAISS's OpenMP threads, and their spin-waiting slows the
        # model's own threads several times over on a small CPU (measured: 55 ms vs 500 ms per query).
        faiss.omp_set_num_threads(1)
        backend = cls(settings, lazy_models, model, onnx_queries=device == dtype == "auto")
        try:
            for name in dict.fromkeys(names):
                # Reads the index's settings; loads no model yet.
                index = Index.open(name, root=index_dir, device=device, dtype=dtype)
                if index.name in backend.indexes:
                    index.close()
                    raise L2VError(
                        f"two indexes are named '{index.name}'; serve folders with different names"
                    )
                backend.indexes[index.name] = ServedIndex(index.name, index)
                if not lazy_models:
                    backend.model_of(backend.indexes[index.name])
        except BaseException:
            backend.close()
            raise
        return backend

    def model_of(self, served: ServedIndex) -> ServedModel:
        """The model of the index as it is on disk; one already loaded for another index is shared, not
        loaded again (a rebuild with another model gets that model here). A model loads outside the index's
        lock, so that the index's other calls (BM25 searches, chunks, status) do not wait for it."""
        with served.lock:
            settings = served.index.settings
            if served.model is not None and served.model.encoder.fingerprint == settings.fingerprint:
                return served.model
        with self._loading:  # one load at a time: a second index of the same model waits, then shares it
            model = self.models.get(settings.fingerprint) or self._model_for(
                served.index.load_encoder(self.model_spec, settings)
            )
        with served.lock:
            served.model = model
        return model

    async def search(
        self, query: str, options: SearchOptions, index: str | None = None
    ) -> tuple[ServedIndex, list]:
        """One search as both servers run it: the query is embedded in its model's batcher, shared with
        concurrent requests (BM25 needs no model), then the index is read in a worker thread. The query is
        checked first (the options were when built), so a bad one is refused before any model loads."""
        check_text(query)
        served = await anyio.to_thread.run_sync(self.index, index)
        model, vector = None, None
        if options.mode != "bm25":
            model = await anyio.to_thread.run_sync(self.model_of, served)
            vector = await model.embed_query(query)
        hits = await anyio.to_thread.run_sync(served.search, query, model, vector, options)
        return served, hits

    def _model_for(self, encoder) -> ServedModel:
        """A loaded encoder served with its batcher, and its query model with one when there is one (called
        holding `_loading`)."""
        from ..encoder.onnx_query import find_query_encoder

        query_encoder = (
            find_query_encoder(encoder.fingerprint, encoder.max_length) if self.onnx_queries else None
        )
        self.models[encoder.fingerprint] = ServedModel(
            encoder,
            self._batcher(partial(encode_with_token_counts, encoder), encoder.name),
            query_encoder
            and self._batcher(
                partial(encode_queries_with_token_counts, query_encoder), f"{encoder.name} queries"
            ),
        )
        return self.models[encoder.fingerprint]

    def _batcher(self, embed, name: str) -> MicroBatcher:
        settings = self.settings
        return MicroBatcher(
            embed,
            max_batch=settings.max_batch,
            wait_ms=settings.wait_ms,
            batching=settings.batching,
            name=name,
        )

    def index(self, name: str | None) -> ServedIndex:
        """The named index (the first one when None), re-read first if another process changed it on disk."""
        if name is None:
            name = next(iter(self.indexes))
        if name not in self.indexes:
            raise UnknownIndex(f"no index named {name!r} is served; served: {', '.join(self.indexes)}")
        served = self.indexes[name]
        with served.lock:
            if served.index.refresh():
                log.info("index %s changed on disk; re-read it", name)
        if not self.lazy_models:
            self.model_of(served)
        return served

    def model(self, name: str | None) -> ServedModel:
        """The model for /v1/embeddings: that of the index called `name` (`/v1/models` lists them), or the
        first index's when no name is given."""
        if name is not None and name not in self.indexes:
            raise UnknownModel(f"model {name!r} is not served; served: {', '.join(self.indexes)}")
        return self.model_of(self.index(name))

    def close(self) -> None:
        for model in self.models.values():
            model.batcher.close()
            if model.query_batcher:
                model.query_batcher.close()
        for served in self.indexes.values():
            served.index.close()

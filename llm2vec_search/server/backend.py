"""What the server serves: indexes loaded once, one encoder and one micro-batcher per distinct model.

Reads of one index run one at a time (a lock: a reload swaps its SQLite and FAISS objects), but the query
embedding happens before, outside that lock, in the model's batcher, so concurrent searches share passes.
"""

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from ..errors import L2VError
from .batching import Embedded, MicroBatcher

log = logging.getLogger(__name__)


@dataclass
class BatchSettings:
    batching: bool = True
    max_batch: int = 64
    wait_ms: float = 5.0


@dataclass
class ServedModel:
    """An encoder shared by every index built with it, and the batcher that owns its forward passes."""

    encoder: object  # llm2vec_search.encoder.Encoder (imported lazily)
    batcher: MicroBatcher

    async def embed(self, texts: Sequence[str], instruction: str | None = None) -> Embedded:
        return await asyncio.wrap_future(self.batcher.submit(texts, instruction))

    def describe(self) -> dict:
        return {
            "model": self.encoder.name,
            "fingerprint": self.encoder.fingerprint,
            "enabled": self.batcher.batching,
            **self.batcher.stats.to_dict(),
        }


@dataclass
class ServedIndex:
    """An open index and the model its vectors come from."""

    name: str
    index: object  # llm2vec_search.indexing.Index
    model: ServedModel
    lock: threading.Lock = field(default_factory=threading.Lock)

    def search(
        self,
        query: str,
        embedded_by: ServedModel | None,
        vector: np.ndarray | None,
        k: int,
        mode: str,
        path_glob: str | None,
    ) -> list:
        """Search with a query vector that `embedded_by` made beforehand (both None for BM25)."""
        from ..search import search_many

        encoded = None if vector is None else vector[None, :]
        with self.lock:
            if embedded_by is not None and embedded_by is not self.model:
                raise L2VError(
                    f"index '{self.name}' was just rebuilt with another model; send the search again"
                )
            vectors = self.index.vectors if mode != "bm25" else None
            return search_many(
                self.index.store, vectors, lambda _texts: encoded, [query], k, mode, path_glob
            )[0]

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
    return Embedded(encoder.encode(texts, instruction=instruction), tokens)


class UnknownIndex(L2VError):
    """A request named an index this server does not serve (HTTP 404)."""


class UnknownModel(L2VError):
    """/v1/embeddings named a model this server does not serve (HTTP 404, OpenAI's `model_not_found`)."""


class Backend:
    """Opens each named index once; indexes of the same model share one encoder and its batcher."""

    def __init__(self, settings: BatchSettings) -> None:
        self.settings = settings
        self.indexes: dict[str, ServedIndex] = {}
        self.models: dict[str, ServedModel] = {}
        self._loading = threading.Lock()

    @classmethod
    def load(cls, names: Sequence[str], index_dir: Path | None, settings: BatchSettings) -> "Backend":
        """Open every index (a name, or a folder served under its own name); an index whose model is already
        loaded gets that encoder instead of a copy."""
        import faiss

        from ..indexing import Index

        # One query at a time gains nothing from FAISS's OpenMP threads, and their spin-waiting slows the
        # model's own threads several times over on a small CPU (measured: 55 ms vs 500 ms per query).
        faiss.omp_set_num_threads(1)
        backend = cls(settings)
        try:
            for name in dict.fromkeys(names):
                index = Index.open(name, root=index_dir)  # reads the index's settings; loads no model yet
                if index.name in backend.indexes:
                    index.close()
                    raise L2VError(
                        f"two indexes are named '{index.name}'; serve folders with different names"
                    )
                known = backend.models.get(index.status().fingerprint)
                if known:
                    index.close()
                    index = Index.open(name, root=index_dir, model=known.encoder)
                backend.indexes[index.name] = ServedIndex(
                    index.name, index, backend._model_for(index.encoder)
                )
        except BaseException:
            backend.close()
            raise
        return backend

    def _model_for(self, encoder) -> ServedModel:
        with self._loading:
            if encoder.fingerprint not in self.models:
                batcher = MicroBatcher(
                    partial(encode_with_token_counts, encoder),
                    max_batch=self.settings.max_batch,
                    wait_ms=self.settings.wait_ms,
                    batching=self.settings.batching,
                    name=encoder.name,
                )
                self.models[encoder.fingerprint] = ServedModel(encoder, batcher)
            return self.models[encoder.fingerprint]

    def index(self, name: str | None) -> ServedIndex:
        """The named index (the first one when None), re-read first if another process changed it on disk.

        An index rebuilt with another model gets that model (loaded here, once).
        """
        if name is None:
            name = next(iter(self.indexes))
        if name not in self.indexes:
            raise UnknownIndex(f"no index named {name!r} is served; served: {', '.join(self.indexes)}")
        served = self.indexes[name]
        with served.lock:
            if served.index.refresh():
                log.info("index %s changed on disk; re-read it", name)
                fingerprint = served.index.store.get_info("fingerprint")
                if fingerprint != served.model.encoder.fingerprint:
                    served.model = self.models.get(fingerprint) or self._model_for(served.index.encoder)
        return served

    def model(self, name: str | None) -> ServedModel:
        """The model for /v1/embeddings: that of the index called `name` (`/v1/models` lists them), or the
        first index's when no name is given."""
        if name is not None and name not in self.indexes:
            raise UnknownModel(f"model {name!r} is not served; served: {', '.join(self.indexes)}")
        return self.index(name).model

    def close(self) -> None:
        for model in self.models.values():
            model.batcher.close()
        for served in self.indexes.values():
            served.index.close()

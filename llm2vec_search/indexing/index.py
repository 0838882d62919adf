"""`Index`: one folder holding `index.db` (SQLite: files, chunks, FTS5) and `vectors.faiss`, kept in step.

The front that ties the parts together: `location.IndexFolder` (the folder's life: the lock, the database,
a rebuild's side folder and swap, removing only its own files), `settings` (what the index was built with),
`index_encoder` (which models may use it), `update` (the crash-safe update pipeline) and `search`
(ranking). Updates are incremental: unchanged files are recognised by stat, then by
sha256. Searches only read, and see the last committed state.
"""

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import L2VError
from .discover import discover, is_under, path_key
from .embedding import ChunkEmbedder
from .extract import Document
from .health import Health, check
from .index_encoder import (
    check_chunking,
    check_compatible,
    load_index_encoder,
    model_spec,
    new_chunking,
    resolve_encoder,
)
from .location import IndexFolder, missing_index, resolve_index
from .options import SearchOptions, check_text
from .search import Hit, rank_queries
from .settings import (
    IndexSettings,
    IndexStatus,
    SalvagedSettings,
    write_last_run,
    write_new_settings,
    write_roots,
)
from .store import Store
from .update import UpdateProgress, UpdateRun, UpdateSummary, reconcile, vector_mismatch
from .vectors import INDEX_TYPES, VectorIndex

if TYPE_CHECKING:
    from ..encoder import Encoder
    from ..encoder.onnx_query import QueryEncoder

log = logging.getLogger(__name__)


class Index:
    """A searchable index; open one with `Index.open(...)` and use it as a context manager."""

    def __init__(
        self,
        folder: IndexFolder,
        encoder: "Encoder | None",
        device: str,
        dtype: str,
        onnx_queries: bool = True,
    ) -> None:
        self.name, self.path = folder.name, folder.path
        self.folder = folder  # the lock, the database, a rebuild's side folder and swap: the index's life
        self._device, self._dtype = device, dtype  # where and how to run the model once it loads
        self._encoder = encoder
        self._onnx_queries = onnx_queries and device == dtype == "auto"
        self._query_encoder: QueryEncoder | None = None
        self._vectors: VectorIndex | None = None

    # opening and closing
    @classmethod
    def open(
        cls,
        name_or_path: str | Path = "default",
        *,
        root: Path | None = None,
        model: "str | Path | Encoder | None" = None,
        create: bool = False,
        rebuild: bool = False,
        chunk_tokens: int | None = None,
        overlap_tokens: int | None = None,
        index_type: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        onnx_queries: bool = True,
    ) -> "Index":
        """Open (or with `create`/`rebuild`, start) an index; see the module docstring for the layout.

        An existing index loads the model it was built with unless `model` is given; a different model or
        chunking than the index's raises `L2VError` asking for `rebuild=True`. `index_type` may change at any
        time: the vectors are reshaped at the next update. With `rebuild`, the new index is built in a side
        folder and swapped in when `update` completes, so the old one stays searchable meanwhile. `device`
        and `dtype` say where the model runs when this index loads it (see `Encoder.from_pretrained`).
        `onnx_queries=False` embeds queries with that model even where the query model (`query_encoder`)
        is built.
        """
        name, folder = resolve_index(name_or_path, root)
        if index_type is not None and index_type not in INDEX_TYPES:
            raise L2VError(f"unknown index type {index_type!r}; choose one of {', '.join(INDEX_TYPES)}")
        writing = create or rebuild
        place = IndexFolder.open(name, folder, writing)
        try:
            if not rebuild and place.open_existing():
                index = cls(place, None, device, dtype, onnx_queries)
                index._encoder = check_compatible(
                    index.settings, name, model, chunk_tokens, overlap_tokens, device, dtype
                )
                place.pending_index_type = index_type
            elif writing:
                index = cls._start(
                    place, model, rebuild, chunk_tokens, overlap_tokens, index_type, device, dtype
                )
                index._onnx_queries = onnx_queries and index._onnx_queries
            else:
                raise missing_index(name, folder, root)
        except BaseException:
            place.abandon()
            raise
        return index

    @classmethod
    def _start(
        cls,
        place: IndexFolder,
        model: "str | Path | Encoder | None",
        rebuild: bool,
        chunk_tokens: int | None,
        overlap_tokens: int | None,
        index_type: str | None,
        device: str,
        dtype: str,
    ) -> "Index":
        """A new index, or a rebuild (in the side folder) of an existing one, possibly a damaged one: then it
        reads at most the old settings, and only if they read."""
        old = rebuild and place.has_index()
        salvaged = SalvagedSettings.read(place.path) if old else SalvagedSettings()
        encoder = resolve_encoder(model, salvaged.model, device, dtype)
        chunk_tokens, overlap_tokens = new_chunking(salvaged, chunk_tokens, overlap_tokens)
        check_chunking(encoder, chunk_tokens, overlap_tokens)
        store = place.create(staging=old)
        spec = model_spec(model if model is not None else salvaged.model)
        kind = index_type or salvaged.index_type
        write_new_settings(store, encoder, spec, chunk_tokens, overlap_tokens, kind)
        return cls(place, encoder, device, dtype)

    def close(self) -> None:
        """Also removes what an unfinished rebuild, or a new index that never got a chunk, left behind."""
        self.folder.close()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def store(self) -> Store:
        """The index's database (a rebuild's, until it is swapped in)."""
        return self.folder.store

    @property
    def settings(self) -> IndexSettings:
        """The index's settings as its database holds them now."""
        return IndexSettings.read(self.store)

    @property
    def encoder(self) -> "Encoder":
        """The index's model, loaded on first use (status and BM25 searches never load it)."""
        if self._encoder is None:
            self._encoder = self.load_encoder()
        return self._encoder

    @property
    def query_encoder(self) -> "Encoder | QueryEncoder":
        """What embeds queries: the model's torch-free query model when it is built, checked and faster on
        this machine (`encoder.onnx_query`; a one-shot search then never imports torch), else `encoder`."""
        if self._query_encoder is None and self._onnx_queries:
            from ..encoder.onnx_query import find_query_encoder

            settings = self.settings
            self._query_encoder = find_query_encoder(settings.fingerprint, settings.max_length)
        return self._query_encoder or self.encoder

    def prepare_query_model(self, announce: Callable[[], None] | None = None) -> Path | None:
        """Build the query model for this index's model if this process has loaded that model and the query
        model is not built yet (tens of seconds, once per model and machine; `announce()` is called first;
        see `encoder.onnx_export`). Its folder, or None where there is none. A failed build is logged, never
        raised: queries then keep the full model."""
        if self._encoder is None or not self._onnx_queries:
            return None
        from ..encoder.onnx_export import build_query_model

        try:
            return build_query_model(self._encoder, announce=announce)
        except Exception as exc:  # an export or runtime failure must not fail the update that preceded it
            log.warning("could not build the query model (%s); queries use the full model", exc)
            return None

    def load_encoder(self, spec: str | None = None, settings: IndexSettings | None = None) -> "Encoder":
        """Load the spec the index records, or `spec` instead; either must give the index's fingerprint.
        `settings`: the index's, read beforehand (by a server under its lock, so the load, which takes
        seconds, does not hold it)."""
        return load_index_encoder(settings or self.settings, self.name, spec, self._device, self._dtype)

    def roots(self) -> list[str]:
        """The folders and files that updates were given (absolute), so readers know what the index covers."""
        return list(self.settings.roots)

    # the vectors
    @property
    def vectors(self) -> VectorIndex:
        if self._vectors is None:
            self._load_vectors()
        assert self._vectors is not None
        return self._vectors

    def _load_vectors(self) -> None:
        self._vectors = self.folder.load_vectors(self.settings.dim)

    def vector_mismatch(self) -> tuple[set[int], set[int]]:
        """(committed chunks without a vector, vectors without a committed chunk); see `update`."""
        return vector_mismatch(self.store, self.vectors)

    def check(self) -> Health:
        """Everything wrong with the index, and what an unfinished update left; see `health.check`."""
        return check(self.store, self.folder.vectors_path)

    def being_updated(self) -> bool:
        """Whether another process holds the write lock now (its update's traces are expected, then)."""
        return self.folder.being_updated()

    def refresh(self) -> bool:
        """Re-read the database and vectors if another process replaced them; True if anything was re-read.

        A rebuild's swap replaces both at once, so the database is checked again after the vectors: if it
        changed meanwhile, both are read again, and a search never pairs one index's vectors with another's
        chunks."""
        changed = False
        self.folder.wait_for_swap()
        while True:
            if self.folder.reopen_if_replaced():
                if self._encoder and self._encoder.fingerprint != self.settings.fingerprint:
                    self._encoder = None
                if self._query_encoder and self._query_encoder.fingerprint != self.settings.fingerprint:
                    self._query_encoder = None
                changed = True
            if self._vectors is not None and self.folder.vectors_replaced():
                self._load_vectors()
                changed = True
            if self.folder.db_unchanged():
                return changed

    # searching
    def search(
        self, text: str, options: SearchOptions = SearchOptions(), query_vector: np.ndarray | None = None
    ) -> list[Hit]:
        """`search_many` for one text (and its vector, when embedded elsewhere)."""
        vectors = None if query_vector is None else np.asarray(query_vector, dtype=np.float32).reshape(1, -1)
        return self.search_many([text], options, query_vectors=vectors)[0]

    def search_many(
        self,
        texts: Sequence[str],
        options: SearchOptions = SearchOptions(),
        query_vectors: np.ndarray | None = None,
    ) -> list[list[Hit]]:
        """The one way to search: the best `options.k` hits for each text, under `options` (mode, path
        filter, hybrid weight). Dense and hybrid queries are embedded in one batch, with the query
        instruction, unless `query_vectors` (one row per text, embedded elsewhere) are given."""
        for text in texts:
            check_text(text)
        self.refresh()
        vectors = None
        if options.mode != "bm25":  # BM25 needs only SQLite
            vectors = self.vectors
            if query_vectors is None and vectors.count:
                query_vectors = self.query_encoder.encode_queries(list(texts))
        return rank_queries(self.store, vectors, texts, query_vectors, options)

    # status
    def status(self) -> IndexStatus:
        index_type = self.folder.pending_index_type
        return IndexStatus.read(self.name, self.path, self.store, self.folder.size(), index_type)

    # updating
    def update(
        self,
        paths: Sequence[str | Path],
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        progress: Callable[[UpdateProgress], None] | None = None,
        checkpoint_seconds: float | None = None,
        embedder: ChunkEmbedder | None = None,
    ) -> UpdateSummary:
        """Bring the index in line with the files under `paths`: add new, re-embed changed, drop deleted.

        Files indexed earlier from outside `paths` are left alone. Finding nothing to index, and nothing
        indexed earlier under `paths` to remove, raises `L2VError` and changes nothing. `checkpoint_seconds`
        fixes how often vectors are saved and their chunks committed (0: after every batch); by default it
        grows with the cost of a save. `embedder` (default: the index's encoder, here) embeds the chunks,
        e.g. on a Ray cluster (`ray_embed`).
        """
        started = time.monotonic()
        roots = [Path(p) for p in paths]
        root_keys = [path_key(p) for p in roots]
        self.folder.lock()  # before the walk, so that a busy index costs a retrying watcher nothing
        try:
            discovery = discover(roots, include, exclude)
            if not discovery.files and not any(is_under(path, root_keys) for path in self.store.files()):
                skipped = ", ".join(f"{n} {reason}" for reason, n in discovery.skipped.most_common())
                self.folder.discard()
                raise L2VError(
                    f"nothing to index under {', '.join(map(str, roots))}: no readable text files"
                    + (f" (skipped: {skipped})" if skipped else "")
                )
        except BaseException:
            self.folder.unlock()
            raise
        found = {path_key(p): p for p in discovery.files}
        summary = UpdateSummary(skipped=dict(discovery.skipped))
        with self._writing(summary, progress, checkpoint_seconds, started, embedder) as run:
            write_roots(self.store, list({*self.roots(), *root_keys}))
            known = self.store.files()  # as `reconcile` left them
            removed = [path for path in known if path not in found and is_under(path, root_keys)]
            run.apply(run.scan(found, known), removed, self.settings.index_type)
        return run.summary

    def update_documents(
        self, docs: Iterable[Document], remove_missing: bool = False, embedder: ChunkEmbedder | None = None
    ) -> UpdateSummary:
        """`update` for in-memory documents (a BEIR corpus): `doc.path` is the id, a text hash decides."""
        with self._writing(UpdateSummary(), embedder=embedder) as run:
            known = self.store.files()
            work, seen = run.plan_documents(docs, known)
            removed = [path for path in known if path not in seen] if remove_missing else []
            run.apply(work, removed, self.settings.index_type)
        return run.summary

    @contextmanager
    def _writing(
        self,
        summary: UpdateSummary,
        progress: Callable[[UpdateProgress], None] | None = None,
        checkpoint_seconds: float | None = None,
        started: float | None = None,
        embedder: ChunkEmbedder | None = None,
    ) -> Iterator[UpdateRun]:
        """Hold the write lock, reconcile after any crash; on success record the run (and swap a rebuild)."""
        with self.folder.writing() as store:
            settings = self.settings
            run = UpdateRun(
                store,
                self.vectors,
                self.folder.vectors_path,
                lambda: self.encoder,
                (settings.chunk_tokens, settings.overlap_tokens),
                summary,
                progress,
                checkpoint_seconds,
                started or time.monotonic(),
                embedder,
            )
            reconcile(store, run.vectors, self.folder.vectors_path)
            yield run
            summary.seconds = round(time.monotonic() - run.started, 3)
            write_last_run(store, summary.to_dict())

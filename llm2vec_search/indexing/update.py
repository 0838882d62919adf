"""The update pipeline: pick what changed, chunk and embed it, and write both halves of the index in step.

Crash safety is a two-phase write: chunks go into SQLite as pending, their vectors are saved atomically, and
only then are the chunks committed and their files marked done (a checkpoint). A run that starts after a
crash first reconciles the two halves (`reconcile`), so a rerun finishes the job with nothing lost or
duplicated. The pipeline works on a store, its vectors and an encoder; `Index` hands them over.
"""

import dataclasses
import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import L2VError
from .chunking import Chunk, chunk_document
from .embedding import ChunkEmbedder, LocalEmbedder
from .extract import Document, SkipFile, extract, kind_of
from .settings import write_vector_index
from .store import FileRecord, Store
from .vectors import VectorIndex

if TYPE_CHECKING:
    from ..encoder import Encoder

# Vectors are saved (and their chunks committed) at most this often, and always at the end of a run.
CHECKPOINT_SECONDS = 5.0
# A save rewrites the whole FAISS file, so on a large index saves are spaced out to keep them under
# 1/SAVE_COST_FACTOR of the run's time (unless the caller fixes the interval).
SAVE_COST_FACTOR = 20
SCAN_REPORT_EVERY = 200


@dataclass
class UpdateProgress:
    """Passed to the `progress` callback during `update`; `phase` is "scan" (hashing) or "embed"."""

    phase: str
    files_total: int
    files_done: int
    bytes_total: int
    bytes_done: int
    chunks_embedded: int
    seconds: float


@dataclass
class UpdateSummary:
    files_added: int = 0
    files_changed: int = 0
    files_removed: int = 0
    files_unchanged: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    chunks_added: int = 0
    chunks_removed: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


@dataclass
class _Work:
    """One file or document to (re)index: what to store once done, and how to get its text."""

    record: FileRecord
    is_new: bool
    load: Callable[[], Document]


def checkpoint_interval(last_save_seconds: float) -> float:
    """Seconds until the next save: CHECKPOINT_SECONDS, or longer when saving the index has become slow."""
    return max(CHECKPOINT_SECONDS, SAVE_COST_FACTOR * last_save_seconds)


def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def vector_mismatch(store: Store, vectors: VectorIndex) -> tuple[set[int], set[int]]:
    """(committed chunks without a vector, vectors without a committed chunk): both empty when SQLite and
    FAISS agree, as they do between updates."""
    committed = store.committed_chunk_ids()
    stored = set(vectors.ids().tolist())
    return committed - stored, stored - committed


def reconcile(store: Store, vectors: VectorIndex, vectors_path: Path) -> None:
    """Make SQLite and FAISS agree after an interrupted run: drop pending chunks and orphan vectors, and
    forget committed chunks whose vectors never reached disk (their files get re-indexed)."""
    with store.transaction():
        store.delete_pending_chunks()
    lost, orphans = vector_mismatch(store, vectors)
    if lost:
        with store.transaction():
            store.forget_chunks(lost)
    if orphans:
        vectors.remove(orphans)
        vectors.save(vectors_path)


@dataclass
class UpdateRun:
    """One update of an index: its two halves, the model (loaded only when something needs embedding), the
    chunking, and how the run reports and checkpoints. `checkpoint_seconds` fixes the interval between
    saves (0: after every batch); None lets it grow with the cost of a save. `embedder` turns chunk texts
    into vectors elsewhere (a Ray cluster); None embeds with the encoder here."""

    store: Store
    vectors: VectorIndex
    vectors_path: Path
    encoder: Callable[[], "Encoder"]
    chunking: tuple[int, int]
    summary: UpdateSummary
    progress: Callable[[UpdateProgress], None] | None = None
    checkpoint_seconds: float | None = None
    started: float = field(default_factory=time.monotonic)
    embedder: ChunkEmbedder | None = None

    def report(self, phase: str, files: tuple[int, int], sizes: tuple[int, int], embedded: int) -> None:
        if self.progress:
            seconds = time.monotonic() - self.started
            self.progress(UpdateProgress(phase, *files, *sizes, embedded, seconds))

    def scan(self, found: dict[str, Path], known: dict[str, FileRecord]) -> list[_Work]:
        """Pick the files to (re)index: same mtime and size → unchanged; else the sha256 decides."""
        work = []
        for done, (key, path) in enumerate(found.items(), start=1):
            old = known.get(key)
            if old is None and kind_of(path) is None:  # a binary format by its name: not even read
                self.summary.skip("binary")
                continue
            try:
                stat = path.stat()
                if old and old.sha256 and (old.mtime_ns, old.size) == (stat.st_mtime_ns, stat.st_size):
                    self.summary.files_unchanged += 1
                    continue
                digest = sha256_file(path)
            except OSError:
                self.summary.skip("unreadable")
                continue
            if old and old.sha256 == digest:
                self.summary.files_unchanged += 1
                with self.store.transaction():
                    self.store.touch_file(key, stat.st_mtime_ns, stat.st_size)
                continue
            record = FileRecord(key, digest, stat.st_mtime_ns, stat.st_size, "")
            work.append(
                _Work(
                    record,
                    old is None,
                    lambda path=path, key=key: dataclasses.replace(extract(path), path=key),
                )
            )
            if done % SCAN_REPORT_EVERY == 0:
                self.report("scan", (len(found), done), (0, 0), 0)
        return work

    def plan_documents(
        self, docs: Iterable[Document], known: dict[str, FileRecord]
    ) -> tuple[list[_Work], set[str]]:
        """In-memory documents to (re)index, a text hash deciding; and the ids of every document seen."""
        seen: set[str] = set()
        work = []
        for doc in docs:
            seen.add(doc.path)
            digest = hashlib.sha256(doc.text.encode("utf-8", "surrogatepass")).hexdigest()
            old = known.get(doc.path)
            if old and old.sha256 == digest:
                self.summary.files_unchanged += 1
                continue
            record = FileRecord(doc.path, digest, 0, len(doc.text), doc.kind)
            work.append(_Work(record, old is None, lambda doc=doc: doc))
        return work, seen

    def apply(self, work: list[_Work], removed: list[str], index_type: str) -> None:
        """Remove `removed`, (re)index `work`, then give the vectors the structure `index_type` wants."""
        summary = self.summary
        writer = _Writer(self, sum(w.record.size for w in work), len(work))
        writer.remove(removed)
        summary.files_removed += len(removed)
        for item in work:
            try:
                doc = item.load()
            except SkipFile as skip:
                summary.skip(skip.reason)
                if not item.is_new:
                    writer.remove([item.record.path])
                    summary.files_removed += 1
                writer.file_done(item.record.size)
                continue
            item.record.kind = doc.kind
            chunks = chunk_document(doc, self.encoder().tokenizer, *self.chunking)
            writer.add(item.record, [c for c in chunks if c.text.strip()])
            if item.is_new:
                summary.files_added += 1
            else:
                summary.files_changed += 1
        writer.finish(index_type)


class _Writer:
    """Embeds queued chunks in batches; a checkpoint saves vectors, then commits chunks and finished files."""

    def __init__(self, run: UpdateRun, bytes_total: int, files: int):
        self.run = run
        self.embedder = run.embedder or LocalEmbedder(run.encoder)
        self.store, self.vectors, self.summary = run.store, run.vectors, run.summary
        self.bytes_total, self.bytes_done = bytes_total, 0
        self.files_total, self.files_done = files, 0
        self.queue: list[Chunk] = []
        self.doomed: list[int] = []
        self.waiting: list[tuple[FileRecord, int]] = []  # file, sequence number of its last chunk
        self.queued = self.embedded = 0
        self.dirty = False
        fixed = run.checkpoint_seconds
        self.interval = checkpoint_interval(0.0) if fixed is None else max(0.0, fixed)
        self.last_checkpoint = time.monotonic()

    def remove(self, paths: Sequence[str]) -> None:
        if not paths:
            return
        with self.store.transaction():
            ids = self.store.remove_files(paths)
        self._doom(ids)

    def _doom(self, ids: list[int]) -> None:
        self.doomed += ids
        self.dirty = True
        self.summary.chunks_removed += len(ids)

    def add(self, record: FileRecord, chunks: list[Chunk]) -> None:
        with self.store.transaction():
            self._doom(self.store.begin_file(record.path, record.kind))
        self.queue += [
            dataclasses.replace(chunk, path=record.path, ordinal=ordinal)
            for ordinal, chunk in enumerate(chunks)
        ]
        self.queued += len(chunks)
        self.waiting.append((record, self.queued))
        window = self.embedder.window
        while len(self.queue) >= window:
            self._embed(self.queue[:window])
            del self.queue[:window]
        self.file_done(record.size)

    def file_done(self, size: int) -> None:
        self.files_done += 1
        self.bytes_done += size
        self._report()

    def _report(self) -> None:
        self.run.report(
            "embed", (self.files_total, self.files_done), (self.bytes_total, self.bytes_done), self.embedded
        )

    def _embed(self, chunks: list[Chunk]) -> None:
        start = 0
        for vectors in self.embedder.embed([chunk.text for chunk in chunks]):
            self._store(chunks[start : start + len(vectors)], vectors)
            start += len(vectors)
        if start != len(chunks):
            raise L2VError(f"the embedder returned {start} vectors for {len(chunks)} chunks")

    def _store(self, chunks: list[Chunk], vectors: np.ndarray) -> None:
        with self.store.transaction():
            ids = self.store.insert_pending_chunks(chunks)
        self.vectors.add(np.asarray(ids, dtype=np.int64), vectors)
        self.dirty = True
        self.embedded += len(chunks)
        self.summary.chunks_added += len(chunks)
        self._report()
        if time.monotonic() - self.last_checkpoint >= self.interval:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Vectors to disk first; then, in one transaction, its chunks go live, finished files are done."""
        self._drop_doomed()
        if self.dirty:
            began = time.monotonic()
            self.vectors.save(self.run.vectors_path)
            if self.run.checkpoint_seconds is None:
                self.interval = checkpoint_interval(time.monotonic() - began)
            self.dirty = False
        ready = [record for record, last in self.waiting if last <= self.embedded]
        self.waiting = [(record, last) for record, last in self.waiting if last > self.embedded]
        with self.store.transaction():
            self.store.commit_pending_chunks()
            self.store.finish_files(ready)
            write_vector_index(self.store, self.vectors.kind)
        self.last_checkpoint = time.monotonic()

    def _drop_doomed(self) -> None:
        """Removals are applied in bulk (HNSW rebuilds on each removal); safe as ids are never reused."""
        if self.doomed:
            self.vectors.remove(self.doomed)
            self.doomed = []

    def finish(self, index_type: str) -> None:
        if self.queue:
            self._embed(self.queue)
            self.queue = []
        self._drop_doomed()
        if self.vectors.reshape(index_type):
            self.dirty = True
        self.checkpoint()

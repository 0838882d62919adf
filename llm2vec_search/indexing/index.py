"""`Index`: one folder holding `index.db` (SQLite: files, chunks, FTS5) and `vectors.faiss`, kept in step.

Updates are incremental (unchanged files are recognised by stat, then by sha256) and crash-safe: chunks are
written as pending, their vectors are saved atomically, and only then are the chunks committed and their files
marked done. A writer that starts after a crash first reconciles the two halves, so a rerun finishes the job
with nothing lost or duplicated. Searches only read, and see the last committed state.
"""

import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from ..errors import L2VError
from ..search import DEFAULT_DENSE_WEIGHT, DEFAULT_MODE
from .chunking import DEFAULT_CHUNK_TOKENS, DEFAULT_OVERLAP_TOKENS, chunk_document
from .discover import discover, path_key
from .embedding import ChunkEmbedder, LocalEmbedder
from .extract import Document, SkipFile, extract
from .store import DB_NAME, ChunkRow, FileRecord, Store, now_iso, read_info
from .vectors import INDEX_TYPES, VECTORS_NAME, VectorIndex

if TYPE_CHECKING:
    from ..encoder import Encoder
    from ..search import Hit

INDEX_DIR_ENV = "L2V_SEARCH_INDEX_DIR"
DEFAULT_INDEX_DIR = Path("indexes")
LOCK_NAME = "write.lock"
# Chunks are counted without the BOS/EOS tokens the encoder adds around them.
SPECIAL_TOKEN_ROOM = 2
# Vectors are saved (and their chunks committed) at most this often, and always at the end of a run;
# the environment variable overrides it (0 = after every batch).
CHECKPOINT_SECONDS = 5.0
CHECKPOINT_ENV = "L2V_SEARCH_CHECKPOINT_SECONDS"
# A save rewrites the whole FAISS file, so on a large index saves are spaced out to keep them under
# 1/SAVE_COST_FACTOR of the run's time (unless the environment variable fixes the interval).
SAVE_COST_FACTOR = 20
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


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


@dataclass
class IndexStatus:
    name: str
    path: str
    files: int
    chunks: int
    model: str
    fingerprint: str
    dim: int
    pooling: str
    max_length: int
    chunk_tokens: int
    overlap_tokens: int
    index_type: str
    vector_index: str
    size_bytes: int
    created_at: str
    last_run_at: str | None
    last_run: dict | None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def index_root(root: Path | str | None = None) -> Path:
    """`--index-dir`, else `$L2V_SEARCH_INDEX_DIR`, else `./indexes`."""
    return Path(root or os.environ.get(INDEX_DIR_ENV) or DEFAULT_INDEX_DIR).expanduser()


def resolve_index(name_or_path: str | Path, root: Path | str | None = None) -> tuple[str, Path]:
    """(name, absolute folder): a bare name lives under the index root, anything with a slash is a folder."""
    text = str(name_or_path)
    if "/" in text or os.sep in text:
        if ".." in Path(text).parts:  # the folder it names would not be the one it seems to name
            raise L2VError(f"invalid index name {text!r}: an index folder path may not contain '..'")
        folder = Path(text).expanduser().absolute()
        return folder.name, folder
    if not _NAME.match(text):
        raise L2VError(f"invalid index name {text!r}: use letters, digits, '.', '_' and '-'")
    return text, (index_root(root) / text).absolute()


def list_indexes(root: Path | str | None = None) -> list[str]:
    folder = index_root(root)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / DB_NAME).exists() and not p.name.startswith("."))


def _staging_folder(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.rebuild")


def _retired_folder(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.old")


def _recover_swap(folder: Path) -> None:
    """Finish a rebuild swap that a crash interrupted between its two renames."""
    retired, staging = _retired_folder(folder), _staging_folder(folder)
    if not folder.exists() and retired.exists():
        os.replace(staging if staging.exists() else retired, folder)
    if folder.exists() and retired.exists():
        shutil.rmtree(retired, ignore_errors=True)


def _model_spec(model: "str | Path | Encoder") -> str:
    if not isinstance(model, str | Path):
        return model.name
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else str(model)


def _load_encoder(
    spec: str,
    pooling: str | None = None,
    max_length: int | None = None,
    device: str = "auto",
    dtype: str = "auto",
) -> "Encoder":
    from ..encoder import Encoder

    return Encoder.from_pretrained(spec, pooling=pooling, max_length=max_length, device=device, dtype=dtype)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_under(path: str, roots: Sequence[str]) -> bool:
    """Whether `path` is one of `roots` or inside one (plain string paths, no file system access)."""
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) if folder.is_dir() else 0


@dataclass
class _Work:
    """One file or document to (re)index: what to store once done, and how to get its text."""

    record: FileRecord
    is_new: bool
    load: Callable[[], Document]


class Index:
    """A searchable index; open one with `Index.open(...)` and use it as a context manager."""

    def __init__(
        self,
        name: str,
        path: Path,
        store: Store,
        encoder: "Encoder | None",
        staging: bool,
        device: str = "auto",
        dtype: str = "auto",
    ) -> None:
        self.name = name
        self._device, self._dtype = device, dtype  # where and how to run the model once it loads
        self.path = path
        self.store = store
        self._encoder = encoder
        self._staging = staging
        self._vectors: VectorIndex | None = None
        self._vectors_signature: tuple | None = None
        self._db_inode = self._inode(self._folder / DB_NAME)
        self._lock_handle = None
        self._created_here = False
        self._wanted_index_type: str | None = None

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
    ) -> "Index":
        """Open (or with `create`/`rebuild`, start) an index; see the module docstring for the layout.

        An existing index loads the model it was built with unless `model` is given; a different model or
        chunking than the index's raises `L2VError` asking for `rebuild=True`. `index_type` may change at any
        time: the vectors are reshaped at the next update. With `rebuild`, the new index is built in a side
        folder and swapped in when `update` completes, so the old one stays searchable meanwhile. `device`
        and `dtype` say where the model runs when this index loads it (see `Encoder.from_pretrained`).
        """
        name, folder = resolve_index(name_or_path, root)
        if index_type is not None and index_type not in INDEX_TYPES:
            raise L2VError(f"unknown index type {index_type!r}; choose one of {', '.join(INDEX_TYPES)}")
        existed = folder.exists()
        # A writer locks before it touches anything (a rebuild's side folder included).
        lock = _take_lock(folder, name) if create or rebuild else None
        try:
            index = cls._open_folder(
                name,
                folder,
                root,
                model,
                create,
                rebuild,
                chunk_tokens,
                overlap_tokens,
                index_type,
                device,
                dtype,
            )
        except BaseException:
            if lock is not None:
                lock.close()
                if not existed:
                    shutil.rmtree(folder, ignore_errors=True)
            raise
        index._lock_handle = lock
        return index

    @classmethod
    def _open_folder(
        cls,
        name: str,
        folder: Path,
        root: Path | None,
        model: "str | Path | Encoder | None",
        create: bool,
        rebuild: bool,
        chunk_tokens: int | None,
        overlap_tokens: int | None,
        index_type: str | None,
        device: str,
        dtype: str,
    ) -> "Index":
        _recover_swap(folder)
        if rebuild:  # from a damaged index, a rebuild reads at most the settings, and only if they read
            old = (folder / DB_NAME).exists() or (folder / VECTORS_NAME).exists()
            info = read_info(folder) if old else {}
        else:
            store = _open_store(name, folder)
            if store is not None:
                index = cls(name, folder, store, None, staging=False, device=device, dtype=dtype)
                index._check_compatible(model, chunk_tokens, overlap_tokens)
                index._wanted_index_type = index_type
                return index
            if not create:
                known = list_indexes(root) if folder.parent == index_root(root).absolute() else []
                hint = f" (indexes here: {', '.join(known)})" if known else ""
                raise L2VError(
                    f"no index named '{name}' at {folder}{hint}; create it with `l2v-search index PATH`"
                )
            old, info = False, {}
        encoder = _resolve_encoder(model, info, device, dtype)
        if chunk_tokens is None:
            chunk_tokens = _number(info, "chunk_tokens", DEFAULT_CHUNK_TOKENS)
        if overlap_tokens is None:
            overlap_tokens = min(_number(info, "overlap_tokens", DEFAULT_OVERLAP_TOKENS), chunk_tokens // 2)
        settings = {
            "model": _model_spec(model if model is not None else info.get("model", "default")),
            "chunk_tokens": chunk_tokens,
            "overlap_tokens": overlap_tokens,
            "index_type": index_type or info.get("index_type", "auto"),
        }
        _check_chunking(encoder, settings["chunk_tokens"], settings["overlap_tokens"])
        store = _new_store(folder, encoder, settings, staging=old)
        index = cls(name, folder, store, encoder, old, device=device, dtype=dtype)
        index._created_here = not old
        return index

    @staticmethod
    def stored_fingerprint(name_or_path: str | Path = "default", root: Path | None = None) -> str | None:
        """The model fingerprint an index was built with (None if there is none), without loading anything."""
        _, folder = resolve_index(name_or_path, root)
        if not (folder / DB_NAME).exists():
            return None
        store = Store.open(folder)
        try:
            return store.get_info("fingerprint")
        finally:
            store.close()

    def _check_compatible(self, model, chunk_tokens: int | None, overlap_tokens: int | None) -> None:
        info = self.store.info()
        rebuild = f"rerun with --rebuild to rebuild index '{self.name}'"
        if model is not None:
            encoder = _resolve_encoder(model, info, self._device, self._dtype)
            if encoder.fingerprint != info["fingerprint"] or encoder.pooling != info["pooling"]:
                raise L2VError(
                    f"index '{self.name}' was built with model {info['model']} "
                    f"(fingerprint {info['fingerprint']}, {info['pooling']} pooling), "
                    f"not {_model_spec(model)} (fingerprint {encoder.fingerprint}, "
                    f"{encoder.pooling} pooling); {rebuild}"
                )
            self._encoder = encoder
        for key, value in (("chunk_tokens", chunk_tokens), ("overlap_tokens", overlap_tokens)):
            if value is not None and value != int(info[key]):
                raise L2VError(
                    f"index '{self.name}' was built with {key.replace('_', '-')} {info[key]}, "
                    f"not {value}; {rebuild}"
                )

    def close(self) -> None:
        """Also removes what an unfinished rebuild, or a new index that never got a chunk, left behind."""
        unused = self._created_here and not self._staging and self.store.counts()[1] == 0
        self.store.close()
        if self._staging or unused:
            shutil.rmtree(self._folder, ignore_errors=True)
        self._release_lock()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def _folder(self) -> Path:
        return _staging_folder(self.path) if self._staging else self.path

    @property
    def encoder(self) -> "Encoder":
        """The index's model, loaded on first use (status and BM25 searches never load it)."""
        if self._encoder is None:
            self._encoder = self.load_encoder()
        return self._encoder

    def load_encoder(self, spec: str | None = None) -> "Encoder":
        """Load the spec the index records, or `spec` instead; either must give the index's fingerprint."""
        info = self.store.info()
        spec = _model_spec(spec) if spec else info["model"]
        encoder = _load_encoder(spec, info["pooling"], int(info["max_length"]), self._device, self._dtype)
        if encoder.fingerprint != info["fingerprint"]:
            what = (
                f"has changed since index '{self.name}' was built"
                if spec == info["model"]
                else f"is not the model index '{self.name}' was built with"
            )
            raise L2VError(
                f"model {spec} {what} (fingerprint {encoder.fingerprint}, index has {info['fingerprint']}); "
                "rerun with --rebuild"
            )
        return encoder

    def roots(self) -> list[str]:
        """The folders and files that updates were given (absolute), so readers know what the index covers."""
        return json.loads(self.store.get_info("roots") or "[]")

    @property
    def vectors(self) -> VectorIndex:
        if self._vectors is None:
            self._load_vectors()
        assert self._vectors is not None
        return self._vectors

    def _load_vectors(self) -> None:
        path = self._folder / VECTORS_NAME
        signature = self._signature(path)
        vectors, problem = self._read_vectors(path, signature is not None)
        if problem:
            raise damaged(self.name, problem)
        self._vectors, self._vectors_signature = vectors, signature

    def _read_vectors(self, path: Path, exists: bool) -> tuple[VectorIndex, str | None]:
        """The vectors (empty ones if there is no file yet), and what is wrong with them, if anything."""
        dim = int(self.store.get_info("dim"))
        empty = VectorIndex.create(dim)
        if not exists:
            chunks = self.store.counts()[1]
            return empty, f"{VECTORS_NAME} is missing ({chunks} chunks have no vector)" if chunks else None
        try:
            vectors = VectorIndex.load(path)
        except L2VError as exc:
            return empty, str(exc)
        if vectors.dim != dim:
            return empty, f"{VECTORS_NAME} holds {vectors.dim}-dimensional vectors, the index {dim}"
        return vectors, None

    def check(self) -> list[str]:
        """Everything wrong with the index (empty when it is sound): SQLite's integrity, a vector for every
        committed chunk and no other, a full-text entry for every chunk, a model that is on this machine."""
        from ..encoder.models import check_model_available

        damage = self.store.integrity_damage()
        if damage:
            return [damage]
        path = self._folder / VECTORS_NAME
        vectors, problem = self._read_vectors(path, path.exists())
        committed, stored = self.store.committed_chunk_ids(), set(vectors.ids().tolist())
        problems = [problem] if problem else []
        if not problem and committed - stored:
            problems.append(f"{len(committed - stored)} chunks have no vector")
        if not problem and stored - committed:
            problems.append(f"{len(stored - committed)} vectors belong to no chunk")
        try:
            check_model_available(self.store.get_info("model") or "")
        except L2VError as exc:
            problems.append(str(exc))
        return problems

    @staticmethod
    def _signature(path: Path) -> tuple | None:
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    @staticmethod
    def _inode(path: Path) -> int | None:
        try:
            return path.stat().st_ino
        except FileNotFoundError:
            return None

    def refresh(self) -> bool:
        """Re-read the database and vectors if another process replaced them; True if anything was re-read."""
        changed = False
        if self._db_inode != self._inode(self._folder / DB_NAME) and (self._folder / DB_NAME).exists():
            self.store.close()
            self.store = Store.open(self._folder)
            self._db_inode = self._inode(self._folder / DB_NAME)
            if self._encoder and self._encoder.fingerprint != self.store.get_info("fingerprint"):
                self._encoder = None
            changed = True
        if (
            self._vectors is not None
            and self._signature(self._folder / VECTORS_NAME) != self._vectors_signature
        ):
            self._load_vectors()
            changed = True
        return changed

    # searching
    def search(
        self,
        text: str,
        k: int = 10,
        mode: str = DEFAULT_MODE,
        path_glob: str | None = None,
        query_vector: np.ndarray | None = None,
        dense_weight: float = DEFAULT_DENSE_WEIGHT,
    ) -> list["Hit"]:
        """Search one text; a `query_vector` embedded elsewhere (a server's batcher) skips the encoder."""
        vectors = None if query_vector is None else np.asarray(query_vector, dtype=np.float32).reshape(1, -1)
        return self.search_many(
            [text], k=k, mode=mode, path_glob=path_glob, query_vectors=vectors, dense_weight=dense_weight
        )[0]

    def search_many(
        self,
        texts: Sequence[str],
        k: int = 10,
        mode: str = DEFAULT_MODE,
        path_glob: str | None = None,
        query_vectors: np.ndarray | None = None,
        dense_weight: float = DEFAULT_DENSE_WEIGHT,
    ) -> list[list["Hit"]]:
        """Search each text; dense/hybrid queries are embedded in one batch, with the query instruction,
        unless `query_vectors` (one row per text) are given. `dense_weight`: see `search.search_many`."""
        from ..search import search_many

        self.refresh()

        def encode(batch: list[str]) -> np.ndarray:
            return self.encoder.encode_queries(batch) if query_vectors is None else query_vectors

        vectors = self.vectors if mode != "bm25" else None  # BM25 needs only SQLite
        return search_many(self.store, vectors, encode, texts, k, mode, path_glob, dense_weight)

    # status
    def status(self) -> IndexStatus:
        info = self.store.info()
        files, chunks = self.store.counts()
        last_run = info.get("last_run")
        return IndexStatus(
            name=self.name,
            path=str(self.path),
            files=files,
            chunks=chunks,
            model=info["model"],
            fingerprint=info["fingerprint"],
            dim=int(info["dim"]),
            pooling=info["pooling"],
            max_length=int(info["max_length"]),
            chunk_tokens=int(info["chunk_tokens"]),
            overlap_tokens=int(info["overlap_tokens"]),
            index_type=self._wanted_index_type or info["index_type"],
            vector_index=info.get("vector_index", "flat"),
            size_bytes=folder_size(self._folder),
            created_at=info["created_at"],
            last_run_at=info.get("last_run_at"),
            last_run=json.loads(last_run) if last_run else None,
        )

    # updating
    def update(
        self,
        paths: Sequence[str | Path],
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        progress: Callable[[UpdateProgress], None] | None = None,
        embedder: ChunkEmbedder | None = None,
    ) -> UpdateSummary:
        """Bring the index in line with the files under `paths`: add new, re-embed changed, drop deleted.

        Files indexed earlier from outside `paths` are left alone. Finding nothing to index raises `L2VError`
        and changes nothing. `embedder` (default: the index's encoder, here) embeds the chunks.
        """
        started = time.monotonic()
        roots = [Path(p) for p in paths]
        discovery = discover(roots, include, exclude)
        if not discovery.files:
            skipped = ", ".join(f"{n} {reason}" for reason, n in discovery.skipped.most_common())
            self._discard_if_new()
            raise L2VError(
                f"nothing to index under {', '.join(map(str, roots))}: no readable text files"
                + (f" (skipped: {skipped})" if skipped else "")
            )
        found = {path_key(p): p for p in discovery.files}
        root_keys = [path_key(p) for p in roots]
        summary = UpdateSummary(skipped=dict(discovery.skipped))
        with self._writing(summary, started):
            with self.store.transaction():
                self.store.set_info(roots=json.dumps(sorted({*self.roots(), *root_keys})))
            known = self.store.files()
            removed = [path for path in known if path not in found and is_under(path, root_keys)]
            work = self._scan(found, known, summary, progress, started)
            self._apply(work, removed, summary, progress, started, embedder)
        return summary

    def update_documents(
        self, docs: Iterable[Document], remove_missing: bool = False, embedder: ChunkEmbedder | None = None
    ) -> UpdateSummary:
        """`update` for in-memory documents (a BEIR corpus): `doc.path` is the id, a text hash decides."""
        started = time.monotonic()
        summary = UpdateSummary()
        with self._writing(summary, started):
            known = self.store.files()
            seen: set[str] = set()
            work = []
            for doc in docs:
                seen.add(doc.path)
                digest = hashlib.sha256(doc.text.encode("utf-8", "surrogatepass")).hexdigest()
                old = known.get(doc.path)
                if old and old.sha256 == digest:
                    summary.files_unchanged += 1
                    continue
                record = FileRecord(doc.path, digest, 0, len(doc.text), doc.kind)
                work.append(_Work(record, old is None, lambda doc=doc: doc))
            removed = [path for path in known if path not in seen] if remove_missing else []
            self._apply(work, removed, summary, None, started, embedder)
        return summary

    def _scan(
        self, found: dict[str, Path], known: dict[str, FileRecord], summary, progress, started
    ) -> list[_Work]:
        """Pick the files to (re)index: same mtime and size → unchanged; else the sha256 decides."""
        work = []
        for done, (key, path) in enumerate(found.items(), start=1):
            old = known.get(key)
            try:
                stat = path.stat()
                if old and old.sha256 and (old.mtime_ns, old.size) == (stat.st_mtime_ns, stat.st_size):
                    summary.files_unchanged += 1
                    continue
                digest = sha256_file(path)
            except OSError:
                summary.skipped["unreadable"] = summary.skipped.get("unreadable", 0) + 1
                continue
            if old and old.sha256 == digest:
                summary.files_unchanged += 1
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
            if progress and done % 200 == 0:
                progress(UpdateProgress("scan", len(found), done, 0, 0, 0, time.monotonic() - started))
        return work

    def _apply(
        self,
        work: list[_Work],
        removed: list[str],
        summary: UpdateSummary,
        progress,
        started,
        embedder: ChunkEmbedder | None,
    ) -> None:
        embedder = embedder or LocalEmbedder(self.encoder)
        writer = _Writer(
            self, summary, progress, started, sum(w.record.size for w in work), len(work), embedder
        )
        writer.remove(removed)
        summary.files_removed += len(removed)
        for item in work:
            try:
                doc = item.load()
            except SkipFile as skip:
                summary.skipped[skip.reason] = summary.skipped.get(skip.reason, 0) + 1
                if not item.is_new:
                    writer.remove([item.record.path])
                    summary.files_removed += 1
                writer.file_done(item.record.size)
                continue
            item.record.kind = doc.kind
            chunks = [
                c for c in chunk_document(doc, self.encoder.tokenizer, *self._chunking()) if c.text.strip()
            ]
            writer.add(item.record, chunks)
            if item.is_new:
                summary.files_added += 1
            else:
                summary.files_changed += 1
        writer.finish(self.store.get_info("index_type"))

    def _chunking(self) -> tuple[int, int]:
        info = self.store.info()
        return int(info["chunk_tokens"]), int(info["overlap_tokens"])

    @contextmanager
    def _writing(self, summary: UpdateSummary, started: float) -> Iterator[None]:
        """Hold the write lock, reconcile after any crash; on success record the run (and swap a rebuild)."""
        if self._lock_handle is None:
            self._acquire_lock()
        try:
            if self._wanted_index_type:
                with self.store.transaction():
                    self.store.set_info(index_type=self._wanted_index_type)
            self._reconcile()
            yield
            summary.seconds = round(time.monotonic() - started, 3)
            with self.store.transaction():
                self.store.set_info(last_run_at=now_iso(), last_run=json.dumps(summary.to_dict()))
            if self._staging:
                self._swap_in()
            self._created_here = False
        finally:
            self._release_lock()

    def _acquire_lock(self) -> None:
        self._lock_handle = _take_lock(self.path, self.name)

    def _release_lock(self) -> None:
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    def _reconcile(self) -> None:
        """Make SQLite and FAISS agree after an interrupted run: drop pending chunks and orphan vectors, and
        forget committed chunks whose vectors never reached disk (their files get re-indexed)."""
        with self.store.transaction():
            self.store.delete_pending_chunks()
        lost, orphans = self.vector_mismatch()
        if lost:
            with self.store.transaction():
                self.store.forget_chunks(lost)
        if orphans:
            self.vectors.remove(orphans)
            self.save_vectors()

    def vector_mismatch(self) -> tuple[set[int], set[int]]:
        """(committed chunks without a vector, vectors without a committed chunk): both empty when SQLite and
        FAISS agree, as they do between updates."""
        committed = self.store.committed_chunk_ids()
        stored = set(self.vectors.ids().tolist())
        return committed - stored, stored - committed

    def save_vectors(self) -> None:
        path = self._folder / VECTORS_NAME
        self.vectors.save(path)
        self._vectors_signature = self._signature(path)

    def _swap_in(self) -> None:
        """Put the finished rebuild in place of the old folder (a crash between renames is fixed on open)."""
        self.store.close()
        retired = _retired_folder(self.path)
        shutil.rmtree(retired, ignore_errors=True)
        os.replace(self.path, retired)
        os.replace(_staging_folder(self.path), self.path)
        shutil.rmtree(retired, ignore_errors=True)
        self._staging = False
        self.store = Store.open(self.path)
        self._db_inode = self._inode(self.path / DB_NAME)
        self._vectors_signature = self._signature(self.path / VECTORS_NAME)

    def _discard_if_new(self) -> None:
        """A rebuild that found nothing to index leaves nothing behind (a new index is removed on close)."""
        if self._staging:
            self.store.close()
            shutil.rmtree(self._folder, ignore_errors=True)
            self._staging = False
            self.store = Store.open(self.path)


def damaged(name: str, what: str) -> L2VError:
    """The one-line error for a damaged index: what is wrong, and the way out."""
    return L2VError(
        f"index '{name}' is damaged: {what}; rebuild it with "
        f"`l2v-search index PATH... --name {name} --rebuild` (and --model MODEL if index.db is lost)"
    )


def _open_store(name: str, folder: Path) -> Store | None:
    """The folder's database if it is a sound index; None when there is none yet (or its creation was cut
    short, leaving nothing else); `damaged` otherwise."""
    db, has_vectors = folder / DB_NAME, (folder / VECTORS_NAME).exists()
    if not db.exists() or db.stat().st_size == 0:
        if has_vectors:
            state = "empty" if db.exists() else "missing"
            raise damaged(name, f"{DB_NAME} is {state} while {VECTORS_NAME} remains")
        return None
    try:
        store = Store.open(folder)
    except L2VError as exc:
        raise damaged(name, f"{DB_NAME} cannot be read ({exc.__cause__ or exc})") from exc
    if "fingerprint" not in store.info() and not has_vectors:  # a crash cut its creation short
        store.close()
        return None
    problem = store.damage()
    if problem:
        store.close()
        raise damaged(name, problem)
    return store


def _number(info: dict[str, str], key: str, default: int) -> int:
    """A numeric setting salvaged from an index being rebuilt, or the default if it does not read."""
    value = info.get(key, "")
    return int(value) if value.isdigit() else default


def _take_lock(folder: Path, name: str) -> IO[str]:
    """The index's write lock (an flock: a killed holder frees it); L2VError if another process has it."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK_NAME, "a+")  # noqa: SIM115  (held until released)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise L2VError(
            f"index '{name}' is being updated by another process; try again when it is done"
        ) from None
    return handle


def _new_store(folder: Path, encoder: "Encoder", settings: dict, staging: bool) -> Store:
    """A fresh database in `folder` (or, for a rebuild, its side folder) holding the index's settings."""
    target = _staging_folder(folder) if staging else folder
    if staging:
        shutil.rmtree(target, ignore_errors=True)
    store = Store.open(target, create=True)
    with store.transaction():
        store.set_info(
            fingerprint=encoder.fingerprint,
            dim=encoder.dim,
            pooling=encoder.pooling,
            max_length=encoder.max_length,
            vector_index="flat",
            created_at=now_iso(),
            **settings,
        )
    return store


def _resolve_encoder(
    model: "str | Path | Encoder | None", info: dict[str, str], device: str, dtype: str
) -> "Encoder":
    if model is None:
        return _load_encoder(info.get("model", "default"), device=device, dtype=dtype)
    if isinstance(model, str | Path):
        return _load_encoder(_model_spec(model), device=device, dtype=dtype)
    return model


def _check_chunking(encoder: "Encoder", chunk_tokens: int, overlap_tokens: int) -> None:
    if chunk_tokens < 8:
        raise L2VError(f"chunk-tokens must be at least 8, got {chunk_tokens}")
    room = encoder.max_length - SPECIAL_TOKEN_ROOM
    if chunk_tokens > room:
        raise L2VError(
            f"chunk-tokens {chunk_tokens} does not fit the model's {encoder.max_length}-token window"
        )
    if not 0 <= overlap_tokens < chunk_tokens // 2 + 1:
        raise L2VError(f"overlap-tokens must be between 0 and half of chunk-tokens, got {overlap_tokens}")


def _fixed_checkpoint_interval() -> float | None:
    """The interval the environment variable sets, or None to let the writer adapt it."""
    value = os.environ.get(CHECKPOINT_ENV)
    try:
        return None if value is None else max(0.0, float(value))
    except ValueError:
        raise L2VError(f"{CHECKPOINT_ENV} must be a number of seconds, got {value!r}") from None


def checkpoint_interval(last_save_seconds: float) -> float:
    """Seconds until the next save: CHECKPOINT_SECONDS, or longer when saving the index has become slow."""
    return max(CHECKPOINT_SECONDS, SAVE_COST_FACTOR * last_save_seconds)


class _Writer:
    """Embeds queued chunks in batches; a checkpoint saves vectors, then commits chunks and finished files."""

    def __init__(
        self,
        index: Index,
        summary: UpdateSummary,
        progress,
        started: float,
        bytes_total: int,
        files: int,
        embedder: ChunkEmbedder,
    ):
        self.index = index
        self.embedder = embedder
        self.store = index.store
        self.summary = summary
        self.progress = progress
        self.started = started
        self.bytes_total, self.bytes_done = bytes_total, 0
        self.files_total, self.files_done = files, 0
        self.queue: list[ChunkRow] = []
        self.doomed: list[int] = []
        self.waiting: list[tuple[FileRecord, int]] = []  # file, sequence number of its last chunk
        self.queued = self.embedded = 0
        self.dirty = False
        self.fixed_interval = _fixed_checkpoint_interval()
        self.interval = checkpoint_interval(0.0) if self.fixed_interval is None else self.fixed_interval
        self.last_checkpoint = time.monotonic()

    def remove(self, paths: Sequence[str]) -> None:
        if not paths:
            return
        with self.store.transaction():
            ids = self.store.remove_files(paths)
        self.doomed += ids
        self.dirty = True
        self.summary.chunks_removed += len(ids)

    def add(self, record: FileRecord, chunks: list) -> None:
        with self.store.transaction():
            old_ids = self.store.begin_file(record.path, record.kind)
        self.doomed += old_ids
        self.dirty = True
        self.summary.chunks_removed += len(old_ids)
        for ordinal, chunk in enumerate(chunks):
            self.queue.append(
                ChunkRow(
                    0,
                    record.path,
                    ordinal,
                    chunk.text,
                    chunk.start_char,
                    chunk.end_char,
                    chunk.start_line,
                    chunk.end_line,
                    chunk.heading,
                )
            )
        self.queued += len(chunks)
        self.waiting.append((record, self.queued))
        while len(self.queue) >= self.embedder.window:
            self._embed(self.queue[: self.embedder.window])
            del self.queue[: self.embedder.window]
        self.file_done(record.size)

    def file_done(self, size: int) -> None:
        self.files_done += 1
        self.bytes_done += size
        self._report()

    def _report(self) -> None:
        if self.progress:
            self.progress(
                UpdateProgress(
                    "embed",
                    self.files_total,
                    self.files_done,
                    self.bytes_total,
                    self.bytes_done,
                    self.embedded,
                    time.monotonic() - self.started,
                )
            )

    def _embed(self, rows: list[ChunkRow]) -> None:
        start = 0
        for vectors in self.embedder.embed([row.text for row in rows]):
            self._store(rows[start : start + len(vectors)], vectors)
            start += len(vectors)
        if start != len(rows):
            raise L2VError(f"the embedder returned {start} vectors for {len(rows)} chunks")

    def _store(self, rows: list[ChunkRow], vectors: np.ndarray) -> None:
        with self.store.transaction():
            ids = self.store.insert_pending_chunks(rows)
        self.index.vectors.add(np.asarray(ids, dtype=np.int64), vectors)
        self.dirty = True
        self.embedded += len(rows)
        self.summary.chunks_added += len(rows)
        self._report()
        if time.monotonic() - self.last_checkpoint >= self.interval:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Vectors to disk first; then, in one transaction, its chunks go live, finished files are done."""
        vectors = self.index.vectors
        self._drop_doomed()
        if self.dirty:
            began = time.monotonic()
            self.index.save_vectors()
            if self.fixed_interval is None:
                self.interval = checkpoint_interval(time.monotonic() - began)
            self.dirty = False
        ready = [record for record, last in self.waiting if last <= self.embedded]
        self.waiting = [(record, last) for record, last in self.waiting if last > self.embedded]
        with self.store.transaction():
            self.store.commit_pending_chunks()
            self.store.finish_files(ready)
            self.store.set_info(vector_index=vectors.kind)
        self.last_checkpoint = time.monotonic()

    def _drop_doomed(self) -> None:
        """Removals are applied in bulk (HNSW rebuilds on each removal); safe as ids are never reused."""
        if self.doomed:
            self.index.vectors.remove(self.doomed)
            self.doomed = []

    def finish(self, index_type: str | None) -> None:
        if self.queue:
            self._embed(self.queue)
            self.queue = []
        self._drop_doomed()
        if self.index.vectors.reshape(index_type or "auto"):
            self.dirty = True
        self.checkpoint()

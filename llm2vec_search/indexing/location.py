"""Where indexes live and an index folder's life: the index root and names, and `IndexFolder`, which holds
the write lock, opens the database only once `health` finds it sound, builds a rebuild in a side folder and
swaps it in on success, finishes a swap a crash cut short, and removes only its own files. The crash-safety
rules live in `IndexFolder`.
"""

import contextlib
import fcntl
import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from ..errors import L2VError
from .health import damaged, open_sound_store, read_vectors
from .settings import write_index_type
from .store import DB_NAME, Store
from .vectors import VECTORS_NAME, VectorIndex

INDEX_DIR_ENV = "L2V_SEARCH_INDEX_DIR"
DEFAULT_INDEX_DIR = Path("indexes")
LOCK_NAME = "write.lock"
# Every file an index writes in its folder: the program creates and deletes these and nothing else there.
INDEX_FILES = (
    DB_NAME,
    f"{DB_NAME}-wal",
    f"{DB_NAME}-shm",
    f"{DB_NAME}-journal",
    VECTORS_NAME,
    f"{VECTORS_NAME}.tmp",
    LOCK_NAME,
)
# How long a reader waits for a rebuild's swap, which another process is doing, to put the index back.
SWAP_WAIT_SECONDS = 10.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


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


def missing_index(name: str, folder: Path, root: Path | None) -> L2VError:
    """The error for an index that does not exist, naming the ones that do in the same root."""
    known = list_indexes(root) if folder.parent == index_root(root).absolute() else []
    hint = f" (indexes here: {', '.join(known)})" if known else ""
    return L2VError(f"no index named '{name}' at {folder}{hint}; create it with `l2v-search index PATH`")


def staging_folder(folder: Path) -> Path:
    """Where a rebuild of `folder` is built while the old index stays searchable."""
    return folder.with_name(f".{folder.name}.rebuild")


def retired_folder(folder: Path) -> Path:
    """Where the old index waits, for the moment of the swap, before it is deleted."""
    return folder.with_name(f".{folder.name}.old")


def own_folders(folder: Path) -> list[Path]:
    """Every folder an index at `folder` may write (a watcher ignores changes there)."""
    return [folder, staging_folder(folder), retired_folder(folder)]


def recover_swap(folder: Path) -> None:
    """Finish a rebuild swap that a crash interrupted between its two renames. The swapping writer holds the
    lock in the old folder until it is done, so a swap in progress is waited for, never finished by another
    process."""
    retired, staging = retired_folder(folder), staging_folder(folder)
    if not retired.exists():
        return
    try:
        lock = _try_lock(retired)
    except OSError:  # gone meanwhile: another process finished the swap
        return
    if lock is None:  # a writer is swapping right now: the folder is back within moments
        deadline = time.monotonic() + SWAP_WAIT_SECONDS
        while not folder.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return
    with lock:
        if not folder.exists():
            os.replace(staging if staging.exists() else retired, folder)
        if retired.exists():
            remove_index(retired, [retired])


def swap_in(folder: Path) -> None:
    """Put the finished rebuild in place of the old folder (a crash between renames is fixed on open)."""
    retired = retired_folder(folder)
    remove_index(retired, [retired])
    if retired.exists():
        raise L2VError(f"{retired} holds files that are not part of an index; move them away and rerun")
    os.replace(folder, retired)
    os.replace(staging_folder(folder), folder)
    remove_index(retired, [retired])


def check_index_folder(folder: Path) -> None:
    """Refuse to make an index in a folder that holds anything but an index: its files are the user's."""
    if (folder / DB_NAME).exists() or not folder.exists():
        return
    if not folder.is_dir():
        raise L2VError(f"{folder} is a file, not an index folder; name a new or empty folder for the index")
    others = sorted(entry.name for entry in folder.iterdir() if entry.name not in INDEX_FILES)
    if others:
        more = f" and {len(others) - 1} more" if len(others) > 1 else ""
        raise L2VError(
            f"{folder} is not an index and not empty (it holds {others[0]!r}{more}); "
            "name a new or empty folder for the index"
        )


def make_folder(folder: Path) -> list[Path]:
    """`mkdir -p folder`; returns the folders it created, deepest first (for `remove_index`)."""
    created = []
    probe = folder
    while not probe.exists() and probe != probe.parent:
        created.append(probe)
        probe = probe.parent
    folder.mkdir(parents=True, exist_ok=True)
    return created


def remove_index(folder: Path, created: Sequence[Path] = ()) -> None:
    """Delete an index's own files in `folder`, one by one, then those of the folders in `created` (deepest
    first) that this left empty; nothing else, so whatever else a folder holds stays."""
    for name in INDEX_FILES:
        (folder / name).unlink(missing_ok=True)
    for directory in created:
        try:
            directory.rmdir()
        except OSError:  # not empty, or already gone
            return


def _try_lock(folder: Path) -> IO[str] | None:
    """The lock of an existing folder, None if another process holds it; OSError if it cannot be opened."""
    handle = open(folder / LOCK_NAME, "a+")  # noqa: SIM115  (the caller closes it)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def take_lock(folder: Path, name: str) -> IO[str]:
    """The index's write lock (an flock: a killed holder frees it); L2VError if another process has it."""
    recover_swap(folder)  # so that a swap in progress gets its folder back before this one is made
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = _try_lock(folder)
    except OSError as exc:
        raise L2VError(f"cannot write index folder {folder}: {exc.strerror}") from exc
    if handle is None:
        raise L2VError(f"index '{name}' is being updated by another process; try again when it is done")
    return handle


def is_locked(folder: Path) -> bool:
    """Whether a process holds the write lock of the index at `folder`."""
    try:
        handle = _try_lock(folder)
    except OSError:  # no folder, or not ours to write: nobody can be writing it through us
        return False
    if handle is None:
        return True
    handle.close()
    return False


def folder_size(folder: Path) -> int:
    """Bytes of the files in `folder`; a file that a writer in another process renames or removes while this
    counts (its `.tmp` files) is left out rather than failing a reader's `status`."""
    total = 0
    with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(folder) as entries:
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):
                if entry.is_file():
                    total += entry.stat().st_size
    return total


def file_signature(path: Path) -> tuple | None:
    """What tells a replaced file from the one read before (inode, mtime, size); None if there is none."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def inode(path: Path) -> int | None:
    """A database is replaced, never rewritten in place, so its inode tells when to re-open it."""
    signature = file_signature(path)
    return signature[0] if signature else None


class IndexFolder:
    """One index's folder, and its database (`store`) once opened. A writer holds the lock from opening (or
    from its update) until it closes. A new index that never got a chunk, and a rebuild (built in a side
    folder) that never finished, leave nothing behind; a finished rebuild is swapped in, and a swap cut
    short is finished by the next `open`. Only the index's own files are ever removed."""

    def __init__(self, name: str, path: Path) -> None:
        self.name, self.path = name, path
        self.staging = False  # the store is a rebuild's, in the side folder
        self.pending_index_type: str | None = None  # asked for at open, written by the next update
        self._store: Store | None = None
        self._lock: IO[str] | None = None
        self._had_index = False
        self._made: list[Path] = []  # folders made for a new index
        self._own_dirs: list[Path] = []  # the folders removed with the index if it leaves them empty
        self._new = False  # a new index that has not finished an update yet
        self._db_inode: int | None = None
        self._vectors_signature: tuple | None = None

    @classmethod
    def open(cls, name: str, path: Path, writing: bool) -> "IndexFolder":
        """Finish an interrupted swap; a writer checks the folder is (or may become) an index, makes it and
        locks it before anything is read, a rebuild's side folder included."""
        folder = cls(name, path)
        recover_swap(path)
        folder._had_index = folder.has_index()
        if writing:
            check_index_folder(path)
            folder._made = make_folder(path)
            folder.lock()
        return folder

    def has_index(self) -> bool:
        return (self.path / DB_NAME).exists() or (self.path / VECTORS_NAME).exists()

    def open_existing(self) -> bool:
        """Open the folder's database if it holds a sound index (False if none; `damaged` if damaged)."""
        store = open_sound_store(self.name, self.path)
        if store is not None:
            self._use(store)
        return store is not None

    def create(self, staging: bool) -> Store:
        """A fresh database: a rebuild's in the side folder (cleared of what an interrupted one left), or a
        new index's in the folder."""
        self.staging, self._new = staging, not staging
        if staging:
            remove_index(self.current)
            self._own_dirs = [self.current]
        else:
            self._own_dirs = self._made
        self._use(Store.open(self.current, create=True))
        return self.store

    def abandon(self) -> None:
        """Undo a failed open: release the lock, and remove the folder's index files if it had no index."""
        if self._store is not None:
            self._store.close()
        if self._lock is not None:
            self.unlock()
            if not self._had_index:
                remove_index(self.path, self._made)

    def close(self) -> None:
        """Also removes what an unfinished rebuild, or a new index that never got a chunk, left behind: the
        files it wrote and the folders it made, never anything else."""
        unused = self._new and self.store.counts()[1] == 0
        self.store.close()
        if self.staging or unused:
            remove_index(self.current, self._own_dirs)
        self.unlock()

    @property
    def store(self) -> Store:
        assert self._store is not None, "the folder's database is not open"
        return self._store

    @property
    def current(self) -> Path:
        """The folder the store is in: the side folder while a rebuild is built."""
        return staging_folder(self.path) if self.staging else self.path

    @property
    def vectors_path(self) -> Path:
        return self.current / VECTORS_NAME

    def size(self) -> int:
        return folder_size(self.current)

    def _use(self, store: Store) -> None:
        self._store = store
        self._db_inode = inode(self.current / DB_NAME)

    # the lock
    def lock(self) -> None:
        if self._lock is None:
            self._lock = take_lock(self.path, self.name)

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def being_updated(self) -> bool:
        """Whether another process holds the write lock now (its update's traces are expected, then)."""
        return self._lock is None and is_locked(self.path)

    @contextmanager
    def writing(self) -> Iterator[Store]:
        """Hold the lock for an update; when it succeeds, swap a rebuild in and keep a new index. The vectors
        it saved count as read, so `vectors_replaced` reports only another process's."""
        self.lock()
        try:
            if self.pending_index_type:
                write_index_type(self.store, self.pending_index_type)
            yield self.store
            if self.staging:
                self.store.close()
                swap_in(self.path)
                self.staging = False
                self._use(Store.open(self.path))
            self._new = False
        finally:
            if not self.staging:
                self._vectors_signature = file_signature(self.vectors_path)
            self.unlock()

    def discard(self) -> None:
        """A rebuild that found nothing to index leaves nothing behind (a new index is removed on close)."""
        if self.staging:
            self.store.close()
            remove_index(self.current, self._own_dirs)
            self.staging = False
            self._use(Store.open(self.path))

    # what another process changed
    def load_vectors(self, dim: int) -> VectorIndex:
        """The folder's vectors, remembered as read; `damaged` if they are not the index's."""
        signature = file_signature(self.vectors_path)
        vectors, problem = read_vectors(self.store, dim, self.vectors_path)
        if problem:
            raise damaged(self.name, problem)
        self._vectors_signature = signature
        return vectors

    def vectors_replaced(self) -> bool:
        return file_signature(self.vectors_path) != self._vectors_signature

    def wait_for_swap(self) -> None:
        """Between another process's swap's two renames: wait for the index to be back."""
        if not self.staging and not (self.path / DB_NAME).exists():
            recover_swap(self.path)

    def reopen_if_replaced(self) -> bool:
        """Re-open the database if another process replaced it (a rebuild's swap); True if it did."""
        current = inode(self.current / DB_NAME)
        if current is None or current == self._db_inode:
            return False
        self.store.close()
        self._db_inode = current
        self._store = Store.open(self.current)
        return True

    def db_unchanged(self) -> bool:
        """Whether the database is still the one open (or gone): a search may pair it with the vectors."""
        return inode(self.current / DB_NAME) in (None, self._db_inode)

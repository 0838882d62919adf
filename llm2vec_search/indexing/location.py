"""Where indexes live: the index root, index names and folders, the rebuild's side folders and their swap,
and the write lock. Only paths and files here; nothing opens a database.
"""

import fcntl
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from ..errors import L2VError
from .store import DB_NAME
from .vectors import VECTORS_NAME

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


def damaged(name: str, what: str) -> L2VError:
    """The one-line error for a damaged index: what is wrong, and the way out."""
    return L2VError(
        f"index '{name}' is damaged: {what}; rebuild it with "
        f"`l2v-search index PATH... --name {name} --rebuild` (and --model MODEL if index.db is lost)"
    )


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
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) if folder.is_dir() else 0


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

"""Where indexes live: the index root, index names and folders, the rebuild's side folders and their swap,
and the write lock. Only paths and files here; nothing opens a database.
"""

import fcntl
import os
import re
import shutil
from pathlib import Path
from typing import IO

from ..errors import L2VError
from .store import DB_NAME

INDEX_DIR_ENV = "L2V_SEARCH_INDEX_DIR"
DEFAULT_INDEX_DIR = Path("indexes")
LOCK_NAME = "write.lock"
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
    """Finish a rebuild swap that a crash interrupted between its two renames."""
    retired, staging = retired_folder(folder), staging_folder(folder)
    if not folder.exists() and retired.exists():
        os.replace(staging if staging.exists() else retired, folder)
    if folder.exists() and retired.exists():
        shutil.rmtree(retired, ignore_errors=True)


def swap_in(folder: Path) -> None:
    """Put the finished rebuild in place of the old folder (a crash between renames is fixed on open)."""
    retired = retired_folder(folder)
    shutil.rmtree(retired, ignore_errors=True)
    os.replace(folder, retired)
    os.replace(staging_folder(folder), folder)
    shutil.rmtree(retired, ignore_errors=True)


def take_lock(folder: Path, name: str) -> IO[str]:
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

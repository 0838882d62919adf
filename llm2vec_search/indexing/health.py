"""What makes an index damaged, and the checks that find it: on every open (cheap, which `IndexFolder`
runs), and in full for `l2v-search status --check`. Every finding is a sentence (damage for `damaged`).
"""

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import L2VError
from .settings import IndexSettings
from .store import DB_NAME, Store
from .update import vector_mismatch
from .vectors import VECTORS_NAME, VectorIndex


def damaged(name: str, what: str) -> L2VError:
    """The one-line error for a damaged index: what is wrong, and the way out."""
    return L2VError(
        f"index '{name}' is damaged: {what}; rebuild it with "
        f"`l2v-search index PATH... --name {name} --rebuild` (and --model MODEL if index.db is lost)"
    )


def open_sound_store(name: str, folder: Path) -> Store | None:
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


def read_vectors(store: Store, dim: int, path: Path) -> tuple[VectorIndex, str | None]:
    """The vectors (empty ones if there is no file yet), and what is wrong with them, if anything."""
    empty = VectorIndex.create(dim)
    if not path.exists():
        chunks = store.counts()[1]
        return empty, f"{VECTORS_NAME} is missing ({chunks} chunks have no vector)" if chunks else None
    try:
        vectors = VectorIndex.load(path)
    except L2VError as exc:
        return empty, str(exc)
    if vectors.dim != dim:
        return empty, f"{VECTORS_NAME} holds {vectors.dim}-dimensional vectors, the index {dim}"
    return vectors, None


@dataclass
class Health:
    """What `check` found: `damage` (the index needs a rebuild) and `unfinished` (what an interrupted or
    running update leaves, which the next update cleans up and completes)."""

    damage: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)


def check(store: Store, vectors_path: Path) -> Health:
    """Everything wrong with an index: SQLite's integrity, a vector for every committed chunk, a full-text
    entry for every chunk, a model that is on this machine (damage); vectors that belong to no committed
    chunk, pending chunks and files half written (an update was cut short, or is running)."""
    from ..encoder.models import check_model_available

    damage = store.integrity_damage()
    if damage:
        return Health([damage])
    settings = IndexSettings.read(store)
    vectors, problem = read_vectors(store, settings.dim, vectors_path)
    health = Health([problem] if problem else [])
    if not problem:
        lost, orphans = vector_mismatch(store, vectors)
        if lost:
            health.damage.append(f"{len(lost)} chunks have no vector")
        if orphans:
            health.unfinished.append(f"{len(orphans)} vectors belong to no chunk")
    pending, files = store.unfinished()
    if pending:
        health.unfinished.append(f"{pending} chunks are not committed")
    if files:
        health.unfinished.append(f"{files} files are half indexed")
    try:
        check_model_available(settings.model)
    except L2VError as exc:
        health.damage.append(str(exc))
    return health

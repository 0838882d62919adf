"""An index's settings (the `info` table) as one typed `IndexSettings` (and `IndexStatus` for reports,
`SalvagedSettings` for a rebuild); the rules they impose on models and chunking are in `index_encoder`.

`info` stores every value as text, under the keys `IndexSettings` names; this module is the only place that
reads or writes those keys by name (the store's `damage` check aside).
"""

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .store import Store, now_iso, read_info

if TYPE_CHECKING:
    from ..encoder import Encoder


@dataclass(frozen=True)
class IndexSettings:
    """What an index was built with and what its last run did, typed."""

    model: str
    fingerprint: str
    pooling: str
    dim: int
    max_length: int
    chunk_tokens: int
    overlap_tokens: int
    index_type: str
    vector_index: str
    created_at: str
    last_run_at: str | None
    last_run: dict | None
    roots: tuple[str, ...]

    @classmethod
    def read(cls, store: Store) -> "IndexSettings":
        """The settings of a sound index (`Store.damage` has vouched for every key that must be there)."""
        info = store.info()
        last_run = info.get("last_run")
        return cls(
            model=info["model"],
            fingerprint=info["fingerprint"],
            pooling=info["pooling"],
            dim=int(info["dim"]),
            max_length=int(info["max_length"]),
            chunk_tokens=int(info["chunk_tokens"]),
            overlap_tokens=int(info["overlap_tokens"]),
            index_type=info["index_type"],
            vector_index=info.get("vector_index", "flat"),
            created_at=info["created_at"],
            last_run_at=info.get("last_run_at"),
            last_run=json.loads(last_run) if last_run else None,
            roots=tuple(json.loads(info.get("roots") or "[]")),
        )


@dataclass
class IndexStatus:
    """An index's settings with what it holds now: what `l2v-search status` shows."""

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

    @classmethod
    def read(
        cls, name: str, path: Path, store: Store, size_bytes: int, index_type: str | None = None
    ) -> "IndexStatus":
        """What the index at `path` holds now; `index_type` is one asked for but not yet applied."""
        settings = IndexSettings.read(store)
        files, chunks = store.counts()
        return cls(
            name=name,
            path=str(path),
            files=files,
            chunks=chunks,
            model=settings.model,
            fingerprint=settings.fingerprint,
            dim=settings.dim,
            pooling=settings.pooling,
            max_length=settings.max_length,
            chunk_tokens=settings.chunk_tokens,
            overlap_tokens=settings.overlap_tokens,
            index_type=index_type or settings.index_type,
            vector_index=settings.vector_index,
            size_bytes=size_bytes,
            created_at=settings.created_at,
            last_run_at=settings.last_run_at,
            last_run=settings.last_run,
        )


@dataclass(frozen=True)
class SalvagedSettings:
    """What a rebuild keeps of the index it replaces, as far as its `info` reads (a damaged one's may not)."""

    model: str = "default"
    index_type: str = "auto"
    chunk_tokens: int | None = None
    overlap_tokens: int | None = None

    @classmethod
    def read(cls, folder: Path) -> "SalvagedSettings":
        info = read_info(folder)

        def number(key: str) -> int | None:
            value = info.get(key, "")
            return int(value) if value.isdigit() else None

        return cls(
            model=info.get("model", "default"),
            index_type=info.get("index_type", "auto"),
            chunk_tokens=number("chunk_tokens"),
            overlap_tokens=number("overlap_tokens"),
        )


def write_new_settings(
    store: Store, encoder: "Encoder", model: str, chunk_tokens: int, overlap_tokens: int, index_type: str
) -> None:
    """The settings of a new index, in its fresh store."""
    with store.transaction():
        store.set_info(
            fingerprint=encoder.fingerprint,
            dim=encoder.dim,
            pooling=encoder.pooling,
            max_length=encoder.max_length,
            vector_index="flat",
            created_at=now_iso(),
            model=model,
            chunk_tokens=chunk_tokens,
            overlap_tokens=overlap_tokens,
            index_type=index_type,
        )


def write_index_type(store: Store, index_type: str) -> None:
    with store.transaction():
        store.set_info(index_type=index_type)


def write_roots(store: Store, roots: list[str]) -> None:
    with store.transaction():
        store.set_info(roots=json.dumps(sorted(roots)))


def write_last_run(store: Store, summary: dict) -> None:
    with store.transaction():
        store.set_info(last_run_at=now_iso(), last_run=json.dumps(summary))


def write_vector_index(store: Store, kind: str) -> None:
    """Inside the caller's transaction: the FAISS structure goes live with the chunks it holds."""
    store.set_info(vector_index=kind)

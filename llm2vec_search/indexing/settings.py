"""An index's settings (the `info` table) as one typed `IndexSettings` (and `IndexStatus` for reports), and
the rules they impose: which model may read or extend an index, and which chunking fits a model's window.

`info` stores every value as text, under the keys `IndexSettings` names; this module is the only place that
reads or writes those keys by name (the store's `damage` check aside).
"""

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import L2VError
from .chunking import DEFAULT_CHUNK_TOKENS, DEFAULT_OVERLAP_TOKENS
from .store import Store, now_iso

if TYPE_CHECKING:
    from ..encoder import Encoder

# Chunks are counted without the BOS/EOS tokens the encoder adds around them.
SPECIAL_TOKEN_ROOM = 2


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


def salvaged_number(info: dict[str, str], key: str, default: int) -> int:
    """A numeric setting salvaged from an index being rebuilt, or the default if it does not read."""
    value = info.get(key, "")
    return int(value) if value.isdigit() else default


def new_chunking(
    info: dict[str, str], chunk_tokens: int | None, overlap_tokens: int | None
) -> tuple[int, int]:
    """The chunking of a new index: as given, else as the index it rebuilds had, else the defaults."""
    if chunk_tokens is None:
        chunk_tokens = salvaged_number(info, "chunk_tokens", DEFAULT_CHUNK_TOKENS)
    if overlap_tokens is None:
        overlap_tokens = min(
            salvaged_number(info, "overlap_tokens", DEFAULT_OVERLAP_TOKENS), chunk_tokens // 2
        )
    return chunk_tokens, overlap_tokens


def model_spec(model: "str | Path | Encoder") -> str:
    """How an index records its model: a name, or a local path made absolute."""
    if not isinstance(model, str | Path):
        return model.name
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else str(model)


def load_encoder(
    spec: str,
    pooling: str | None = None,
    max_length: int | None = None,
    device: str = "auto",
    dtype: str = "auto",
) -> "Encoder":
    from ..encoder import Encoder

    return Encoder.from_pretrained(spec, pooling=pooling, max_length=max_length, device=device, dtype=dtype)


def resolve_encoder(
    model: "str | Path | Encoder | None", recorded: str, device: str, dtype: str
) -> "Encoder":
    """The encoder `model` names (or is), else the one an index records."""
    if model is None:
        return load_encoder(recorded, device=device, dtype=dtype)
    if isinstance(model, str | Path):
        return load_encoder(model_spec(model), device=device, dtype=dtype)
    return model


def load_index_encoder(
    settings: IndexSettings, name: str, spec: str | None, device: str, dtype: str
) -> "Encoder":
    """Load the spec the index records, or `spec` instead; either must give the index's fingerprint."""
    spec = model_spec(spec) if spec else settings.model
    encoder = load_encoder(spec, settings.pooling, settings.max_length, device, dtype)
    if encoder.fingerprint != settings.fingerprint:
        what = (
            f"has changed since index '{name}' was built"
            if spec == settings.model
            else f"is not the model index '{name}' was built with"
        )
        raise L2VError(
            f"model {spec} {what} (fingerprint {encoder.fingerprint}, index has {settings.fingerprint}); "
            "rerun with --rebuild"
        )
    return encoder


def check_compatible(
    settings: IndexSettings,
    name: str,
    model: "str | Path | Encoder | None",
    chunk_tokens: int | None,
    overlap_tokens: int | None,
    device: str,
    dtype: str,
) -> "Encoder | None":
    """Refuse to open an index for another model or chunking; returns `model`'s encoder when one is given."""
    rebuild = f"rerun with --rebuild to rebuild index '{name}'"
    encoder = None
    if model is not None:
        encoder = resolve_encoder(model, settings.model, device, dtype)
        if encoder.fingerprint != settings.fingerprint or encoder.pooling != settings.pooling:
            raise L2VError(
                f"index '{name}' was built with model {settings.model} "
                f"(fingerprint {settings.fingerprint}, {settings.pooling} pooling), "
                f"not {model_spec(model)} (fingerprint {encoder.fingerprint}, "
                f"{encoder.pooling} pooling); {rebuild}"
            )
    for key, value in (("chunk_tokens", chunk_tokens), ("overlap_tokens", overlap_tokens)):
        built = getattr(settings, key)
        if value is not None and value != built:
            raise L2VError(
                f"index '{name}' was built with {key.replace('_', '-')} {built}, not {value}; {rebuild}"
            )
    return encoder


def check_chunking(encoder: "Encoder", chunk_tokens: int, overlap_tokens: int) -> None:
    if chunk_tokens < 8:
        raise L2VError(f"chunk-tokens must be at least 8, got {chunk_tokens}")
    room = encoder.max_length - SPECIAL_TOKEN_ROOM
    if chunk_tokens > room:
        raise L2VError(
            f"chunk-tokens {chunk_tokens} does not fit the model's {encoder.max_length}-token window"
        )
    if not 0 <= overlap_tokens < chunk_tokens // 2 + 1:
        raise L2VError(f"overlap-tokens must be between 0 and half of chunk-tokens, got {overlap_tokens}")

"""Which encoder an index uses: the model it records (loaded lazily, beside `Encoder.from_pretrained`), or a
given one, which must match the index's fingerprint; and which chunking fits a model's window.
"""

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import L2VError
from .chunking import DEFAULT_CHUNK_TOKENS, DEFAULT_OVERLAP_TOKENS
from .settings import IndexSettings, SalvagedSettings

if TYPE_CHECKING:
    from ..encoder import Encoder

# Chunks are counted without the BOS/EOS tokens the encoder adds around them.
SPECIAL_TOKEN_ROOM = 2


def new_chunking(
    salvaged: SalvagedSettings, chunk_tokens: int | None, overlap_tokens: int | None
) -> tuple[int, int]:
    """The chunking of a new index: as given, else as the index it rebuilds had, else the defaults."""
    if chunk_tokens is None:
        chunk_tokens = DEFAULT_CHUNK_TOKENS if salvaged.chunk_tokens is None else salvaged.chunk_tokens
    if overlap_tokens is None:
        overlap = DEFAULT_OVERLAP_TOKENS if salvaged.overlap_tokens is None else salvaged.overlap_tokens
        overlap_tokens = min(overlap, chunk_tokens // 2)
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

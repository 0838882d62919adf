"""What a search asks for, as one object: each front end (CLI, REPL, HTTP, MCP, evaluation) builds a
`SearchOptions` once and hands it to `Index.search`/`search_many`. A new option is one more field here; the
HTTP request model and the MCP tool's schema are generated from these fields (`server/schema.py`), so no
front end can miss it.
"""

from dataclasses import dataclass, field, fields, replace
from typing import Literal, get_args

from ..errors import L2VError

SearchMode = Literal["bm25", "dense", "hybrid"]
SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)
# Hybrid is the default because it scored above BM25 with the shipped model on both dev and test
# (docs/quality.md has the figures).
DEFAULT_MODE = "hybrid"
# The dense list's weight against BM25's 1 in hybrid fusion, chosen on squad_dev (docs/quality.md).
DEFAULT_DENSE_WEIGHT = 0.25
# More hits than anyone reads; also keeps k inside what SQLite and FAISS accept (a 64-bit k overflows them).
MAX_K = 10_000
MAX_DENSE_WEIGHT = 100.0


@dataclass(frozen=True)
class SearchOptions:
    """How to search; checked when built, so a bad option fails before any model loads. Each field's
    metadata (description, bounds) is what the HTTP and MCP schemas publish and `__post_init__` checks."""

    k: int = field(default=10, metadata={"description": "How many hits to return.", "ge": 1, "le": MAX_K})
    mode: SearchMode = field(
        default=DEFAULT_MODE,
        metadata={
            "description": "bm25: keywords (fast); dense: meaning, by the embedding model; hybrid: both, "
            f"their scores combined. Default: {DEFAULT_MODE}."
        },
    )
    path_glob: str | None = field(
        default=None,
        metadata={"description": "Only files matching this glob, e.g. '*.md' or 'docs/*.py'."},
    )
    dense_weight: float = field(
        default=DEFAULT_DENSE_WEIGHT,
        metadata={
            "description": "Hybrid: weight of the dense (cosine) scores, added to BM25's divided by the sum "
            "of the query words' IDFs (about the share of the query a chunk matches).",
            "ge": 0.0,
            "le": MAX_DENSE_WEIGHT,
        },
    )

    def __post_init__(self) -> None:
        if self.mode not in SEARCH_MODES:
            raise L2VError(f"unknown search mode {self.mode!r}; choose one of {', '.join(SEARCH_MODES)}")
        for option in fields(self):
            low, high = option.metadata.get("ge"), option.metadata.get("le")
            value = getattr(self, option.name)
            if low is not None and not low <= value <= high:
                raise L2VError(f"{option.name} must be from {low:g} to {high:g}, got {value}")
        if not self.path_glob:  # an empty filter is no filter
            object.__setattr__(self, "path_glob", None)

    def replace(self, **changes) -> "SearchOptions":
        """A copy with `changes`, checked like any other."""
        return replace(self, **changes)


def check_text(text: object) -> None:
    """A query must be a string with something in it."""
    if not isinstance(text, str) or not text.strip():
        raise L2VError("the query is empty")

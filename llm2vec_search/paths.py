"""Where l2v-search keeps its own files: a light module (no torch), so a one-shot `query` finds them fast."""

import os
from pathlib import Path

CACHE_ENV = "L2V_SEARCH_CACHE_DIR"


def cache_dir() -> Path:
    """Converted models and other caches: $L2V_SEARCH_CACHE_DIR, else $XDG_CACHE_HOME/l2v-search, else
    ~/.cache/l2v-search."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "l2v-search"

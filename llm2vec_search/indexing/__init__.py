"""Indexing: files → chunks → vectors → index → hits.

`discover` finds files, `extract` reads their text, `chunking` cuts it into chunks, `update` embeds and
stores them (`store`: SQLite and FTS5; `vectors`: FAISS), `search` ranks them as `options` (`SearchOptions`)
ask; `location` says where an index lives and keeps its folder through its life (`IndexFolder`), `settings`
what it was built with; `Index` is the front over all of it.

The public names are imported lazily, so that reading a constant from `indexing.search` does not load FAISS.
"""

from importlib import import_module

_LAZY = {
    "Chunk": "chunking",
    "Document": "extract",
    "Hit": "search",
    "Index": "index",
    "SearchOptions": "options",
    "IndexStatus": "index",
    "IndexSettings": "settings",
    "UpdateProgress": "update",
    "UpdateSummary": "update",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Indexing: files → chunks → vectors → index → hits.

`discover` finds files, `extract` reads their text, `chunking` cuts it into chunks, `update` embeds and
stores them (`store`: SQLite and FTS5; `vectors`: FAISS), `search` ranks them as `options` (`SearchOptions`)
ask; `location` says where an index lives and keeps its folder through its life (`IndexFolder`), `settings`
what it was built with; `Index` is the front over all of it.

The public names are imported lazily, so that reading a constant from `indexing.search` does not load FAISS.
"""

from ..lazy import lazy_attributes

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


__getattr__ = lazy_attributes(__name__, _LAZY)

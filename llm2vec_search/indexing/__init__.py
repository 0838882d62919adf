"""Indexing: discover files, extract text, chunk it, and keep vectors and metadata in an index."""

from .chunking import Chunk, chunk_document
from .discover import discover
from .extract import Document, extract
from .index import Index, IndexStatus, UpdateProgress, UpdateSummary

__all__ = [
    "Chunk",
    "Document",
    "Index",
    "IndexStatus",
    "UpdateProgress",
    "UpdateSummary",
    "chunk_document",
    "discover",
    "extract",
]

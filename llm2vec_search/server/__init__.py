"""`l2v-search serve`: a local retrieval backend (search + OpenAI-compatible embeddings) for RAG programs."""

from .app import Limits, create_app
from .backend import Backend, BatchSettings, ServedIndex, ServedModel, UnknownIndex
from .batching import BatchStats, Embedded, MicroBatcher
from .security import check_bind, is_loopback, resolve_api_key

__all__ = [
    "Backend",
    "BatchSettings",
    "BatchStats",
    "Embedded",
    "Limits",
    "MicroBatcher",
    "ServedIndex",
    "ServedModel",
    "UnknownIndex",
    "check_bind",
    "create_app",
    "is_loopback",
    "resolve_api_key",
]

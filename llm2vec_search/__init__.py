"""l2v-search: local vector search with a decoder LLM turned into a text encoder the LLM2Vec way.

The public names are imported lazily so that `l2v-search --help` does not pay for importing torch.
"""

from importlib import import_module

from .errors import L2VError

__version__ = "0.1.0"
_LAZY = {
    "Encoder": "llm2vec_search.encoder",
    "ModelDirConfig": "llm2vec_search.encoder",
}
__all__ = ["L2VError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'llm2vec_search' has no attribute {name!r}")

"""l2v-search: local vector search with a decoder LLM turned into a text encoder the LLM2Vec way.

The public names are imported lazily so that `l2v-search --help` does not pay for importing torch.
"""

from .errors import L2VError
from .lazy import lazy_attributes

__version__ = "0.1.0"
_LAZY = {
    "Encoder": "encoder",
    "ModelDirConfig": "encoder",
}
__all__ = ["L2VError", *_LAZY]


__getattr__ = lazy_attributes(__name__, _LAZY)

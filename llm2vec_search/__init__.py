"""l2v-search: local vector search with a decoder LLM turned into a text encoder the LLM2Vec way."""

from .encoder import Encoder, ModelDirConfig
from .errors import L2VError

__all__ = ["Encoder", "L2VError", "ModelDirConfig"]
__version__ = "0.1.0"

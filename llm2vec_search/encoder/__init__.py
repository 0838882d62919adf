"""The embedding core: model specs → bidirectional decoder → adapters → pooled, normalized vectors."""

from .adapters import ModelDirConfig
from .bidirectional import AttentionCheck, check_attention, set_bidirectional
from .device import pick_device
from .encoder import Encoder, EncodeStats
from .pooling import POOLING_MODES, pool

__all__ = [
    "POOLING_MODES",
    "AttentionCheck",
    "EncodeStats",
    "Encoder",
    "ModelDirConfig",
    "check_attention",
    "pick_device",
    "pool",
    "set_bidirectional",
]

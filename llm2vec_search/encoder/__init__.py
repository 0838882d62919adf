"""The embedding core: model specs → bidirectional decoder → adapters → pooled, normalized vectors.

The public names are imported lazily, so that the torch-free modules of this package (`tokens`, `recent`,
`onnx_query`: the query path) can be imported without torch.
"""

from ..lazy import lazy_attributes

_LAZY = {
    "ModelDirConfig": "adapters",
    "AttentionCheck": "bidirectional",
    "check_attention": "bidirectional",
    "set_bidirectional": "bidirectional",
    "pick_device": "device",
    "Encoder": "encoder",
    "EncodeStats": "encoder",
    "POOLING_MODES": "pooling",
    "pool": "pooling",
}
__all__ = sorted(_LAZY)


__getattr__ = lazy_attributes(__name__, _LAZY)

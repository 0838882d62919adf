"""The embedding core: model specs → bidirectional decoder → adapters → pooled, normalized vectors.

The public names are imported lazily, so that the torch-free modules of this package (`tokens`, `recent`,
`onnx_query`: the query path) can be imported without torch.
"""

from importlib import import_module

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


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

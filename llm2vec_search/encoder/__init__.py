"""The embedding core: model specs → bidirectional decoder → adapters → pooled, normalized vectors.

The names below are imported on first use, so that the torch-free modules of this package (`tokens`,
`onnx_query`) can be imported without torch.
"""

import importlib

_HOMES = {
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


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)


__all__ = sorted(_HOMES)

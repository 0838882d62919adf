"""A decoder cut to a range of its transformer layers.

A pruned model keeps only its first N layers: dropping the top layers of an LLM turned encoder costs little
(arXiv 2410.14578), and each layer dropped makes indexing and queries 1/num_layers cheaper. Distillation
also runs the frozen bottom and the trained top of one model as separate views.
"""

import copy

from torch import nn

from ..errors import L2VError


def slice_config(config, start: int, stop: int | None) -> None:
    """Make `config` (in place) describe layers [start, stop) of the model it describes."""
    config.num_hidden_layers = len(range(config.num_hidden_layers)[start:stop])
    if getattr(config, "layer_types", None):
        config.layer_types = list(config.layer_types)[start:stop]


def keep_layers(model: nn.Module, count: int) -> nn.Module:
    """Drop all but the first `count` transformer layers of `model` (a base model: `.layers`), in place; its
    config then says `count` layers, so a saved copy loads as the smaller model."""
    if not isinstance(getattr(model, "layers", None), nn.ModuleList):
        raise L2VError(f"cannot prune {type(model).__name__}: it has no .layers")
    total = len(model.layers)
    if not 1 <= count <= total:
        raise L2VError(f"layers must be in [1, {total}] for this model, got {count}")
    model.layers = model.layers[:count]
    slice_config(model.config, 0, count)
    return model


def layer_view(model: nn.Module, start: int, stop: int | None, final_norm: bool) -> nn.Module:
    """A model that runs only layers [start, stop) of `model` (sharing its modules): fed `inputs_embeds`
    (the output of layer `start - 1`), it returns layer `stop - 1`'s output, normalized when `final_norm`."""
    if not hasattr(model, "layers") or not hasattr(model, "norm"):
        raise L2VError(f"cannot split {type(model).__name__} into layers (no .layers / .norm)")
    view = copy.copy(model)
    view._modules = dict(model._modules)
    view._modules["layers"] = nn.ModuleList(list(model.layers)[start:stop])
    if not final_norm:
        view._modules["norm"] = nn.Identity()
    view.config = copy.copy(model.config)
    slice_config(view.config, start, stop)
    return view

"""Ready-to-load models in the model cache: adapters merged once, the tokenizer in its serialized fast form.

A cold load used to spend most of its time on work that gives the same result every time (issue 23, 14.5 s
for the default): merging the LoRA adapters with PEFT, rebuilding the 262k-token tokenizer through
`AutoTokenizer` and resolving the model class through transformers' auto classes. The first load of a
(base weights, adapters) pair does that work once and writes an entry `cache_dir()/ready-<key>/`; later loads
read the entry with the concrete model class (safetensors are memory-mapped) and `tokenizers`' own
deserializer, which runs on a second thread while Python imports transformers (it releases the GIL). PEFT is
imported only to build an entry.
"""

import hashlib
import importlib
import json
import logging
import threading
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import L2VError
from .models import cache_dir, write_cache_entry

log = logging.getLogger(__name__)

READY_FORMAT = 1  # bump when an entry's layout changes, so that old entries are not reused
READY_MARKER = "l2v-ready.json"
TOKENIZER_FILE = "tokenizer.json"
SHARD_SIZE = "2GB"


def ready_key(
    weights_dir: Path,
    identity: str,
    adapter_dirs: list[Path],
    dtype: torch.dtype = torch.float32,
    layers: int | None = None,
) -> str:
    """An entry name that changes with the base weights' files, the adapters' weights and settings, the
    dtype the entry holds and the layers it keeps (float32 and all layers add nothing, so that entries made
    before those counted stay in use)."""
    head = [READY_FORMAT, identity] + ([str(dtype)] if dtype != torch.float32 else [])
    head += [["layers", layers]] if layers else []
    digest = hashlib.sha256(json.dumps(head).encode())
    for path in sorted(weights_dir.glob("*.safetensors")) + sorted(weights_dir.glob("*.bin")):
        stat = path.stat()
        digest.update(f"{path.name}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    for directory in adapter_dirs:
        for path in sorted(directory.glob("adapter_*")):  # adapter_model.* and adapter_config.json (scaling)
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return "ready-" + digest.hexdigest()[:16]


def load_ready(
    weights_dir: Path,
    identity: str,
    adapter_dirs: list[Path],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    layers: int | None = None,
) -> tuple[nn.Module, Any]:
    """(network in `dtype` on `device` with the adapters merged and only its first `layers` layers kept,
    tokenizer), from the cache entry for these weights, adapters, dtype and layers; an entry that is missing,
    incomplete or unreadable is built (again) from the base weights. The weights go from their
    (memory-mapped) files straight to `device` in `dtype`: an 8B base needs 16 GB of GPU memory in bf16 and
    no float32 or CPU copy on the way."""
    entry = cache_dir() / ready_key(weights_dir, identity, adapter_dirs, dtype, layers)
    manifest = _manifest(entry)
    if manifest is not None:
        try:
            return _load_entry(entry, manifest, dtype, device)
        except Exception as exc:  # garbled files whose sizes still match: rebuild, never trust
            log.warning("ready model %s is unreadable (%s); building it again", entry, _first_line(exc))
    network, tokenizer = merged_network(weights_dir, adapter_dirs, dtype, device, layers)
    # Without adapters or pruning the base weights are used as they are; the entry holds only the tokenizer.
    external = None if adapter_dirs or layers else weights_dir.resolve()
    # Another process may have written the entry meanwhile; one that failed to load above is replaced.
    reuse = (lambda folder: _manifest(folder) is not None) if manifest is None else None
    write_cache_entry(
        entry.name, lambda folder: _write_entry(folder, network, tokenizer, external), READY_MARKER, reuse
    )
    return network, tokenizer


def merged_network(
    weights_dir: Path,
    adapter_dirs: list[Path],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    layers: int | None = None,
) -> tuple[nn.Module, Any]:
    """The slow path: transformers' auto classes, pruned to the first `layers` layers, then each adapter
    merged with PEFT, in `dtype` on `device` (PEFT adds each LoRA delta to the weight in place; on CPU it
    computes the delta in float32)."""
    from transformers import AutoModel, AutoTokenizer

    from .adapters import apply_adapters

    _quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(weights_dir)
        network = AutoModel.from_pretrained(weights_dir, dtype=dtype, device_map=_on(device))
    except Exception as exc:  # OSError or a safetensors/tokenizers error: unreadable files
        raise L2VError(
            f"cannot read model weights in {weights_dir}: {_first_line(exc)} "
            "(if this is a cache entry, delete it to convert again)"
        ) from exc
    return apply_adapters(network, adapter_dirs, layers), tokenizer


def _write_entry(folder: Path, network: nn.Module, tokenizer, external: Path | None) -> dict:
    """Write the merged weights (unless they are the base's own) and the tokenizer; return the manifest."""
    if external is None:
        # safetensors copies a whole file's tensors from the GPU into memory to write it: 2 GB files keep an
        # 8B model's entry from needing 16 GB of RAM (transformers' default file size is 50 GB)
        network.save_pretrained(folder, max_shard_size=SHARD_SIZE)
    tokenizer.backend_tokenizer.save(str(folder / TOKENIZER_FILE))
    model_class = type(network)
    return {
        "format": READY_FORMAT,
        "model_class": f"{model_class.__module__}.{model_class.__qualname__}",
        "weights": str(external) if external else None,
        "special_tokens": tokenizer.special_tokens_map,
        "files": {path.name: path.stat().st_size for path in sorted(folder.iterdir())},
    }


def _manifest(entry: Path) -> dict | None:
    """The manifest of a complete entry: marker readable, format current, files at their sizes."""
    try:
        manifest = json.loads((entry / READY_MARKER).read_text())
        if manifest.get("format") != READY_FORMAT:
            return None
        for name, size in manifest["files"].items():
            if (entry / name).stat().st_size != size:
                return None
    except (OSError, ValueError, KeyError, AttributeError):
        return None
    return manifest


def _load_entry(
    entry: Path, manifest: dict, dtype: torch.dtype, device: torch.device | str
) -> tuple[nn.Module, Any]:
    from tokenizers import Tokenizer

    loaded: dict[str, Any] = {}

    def read_tokenizer() -> None:
        try:
            loaded["backend"] = Tokenizer.from_file(str(entry / TOKENIZER_FILE))
        except Exception as exc:  # handed to the caller's thread below
            loaded["error"] = exc

    reader = threading.Thread(target=read_tokenizer, daemon=True)
    reader.start()
    from transformers import PreTrainedTokenizerFast

    _quiet_transformers()
    module, _, name = manifest["model_class"].rpartition(".")
    model_class = getattr(importlib.import_module(module), name)
    network = model_class.from_pretrained(manifest["weights"] or entry, dtype=dtype, device_map=_on(device))
    reader.join()
    if "error" in loaded:
        raise loaded["error"]
    # `__init__` keeps a backend set beforehand (as transformers' own tokenizer classes do); passing it as
    # `tokenizer_object` would deep-copy all 262k tokens again (a second).
    tokenizer = PreTrainedTokenizerFast.__new__(PreTrainedTokenizerFast)
    tokenizer._tokenizer = loaded["backend"]
    tokenizer.__init__(**manifest["special_tokens"])
    return network, tokenizer


def _on(device: torch.device | str) -> dict[str, str]:
    """A device map that puts the whole model on `device` (one device: no accelerate hooks)."""
    return {"": str(device)}


def _quiet_transformers() -> None:
    """No per-tensor "Loading weights" progress bar on a search's stderr."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__

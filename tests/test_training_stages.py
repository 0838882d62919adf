"""Training stages on tiny random models: MNTP learns, adapters round-trip into `Encoder`, resume is exact."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TRAINING_TEXT, save_tiny_causal_lm, save_tiny_model
from safetensors.torch import load_file
from transformers import AutoTokenizer

from llm2vec_search import L2VError
from llm2vec_search.encoder import Encoder
from llm2vec_search.encoder.adapters import ModelDirConfig
from llm2vec_search.training import (
    MNTPSettings,
    MNTPStage,
    Pair,
    PairSource,
    SimCSESettings,
    SimCSEStage,
    StartingPoint,
    SupervisedSettings,
    train_mntp,
    train_supervised,
)
from llm2vec_search.training.loop import checkpoint_adapter, train
from llm2vec_search.training.setup import free_adapter_name, record_stage

TEXTS = ["the cat sat on the mat", "stock markets fell sharply", "proteins fold"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    return save_tiny_causal_lm(tmp_path_factory.mktemp("tiny-causal"))


def mntp_settings(**overrides) -> MNTPSettings:
    options = dict(steps=2, batch_size=2, max_length=32, lr=1e-2, save_every=2, device="cpu")
    return MNTPSettings(**{**options, **overrides})


def test_one_mntp_step_lowers_the_loss_on_a_repeated_batch(base_dir):
    stage = MNTPStage(StartingPoint.from_spec(str(base_dir)), TRAINING_TEXT, mntp_settings(lora_dropout=0.0))
    batch = next(stage.micro_batches())
    trainable = [p for p in stage.model.parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name, p in stage.model.named_parameters() if p.requires_grad)

    def loss() -> float:
        torch.manual_seed(7)  # the same masking both times
        return stage.backward(batch, lambda value: value)

    before = loss()
    torch.optim.AdamW(trainable, lr=1e-2).step()
    assert loss() < before - 0.01


@pytest.mark.parametrize("family", ["gemma3_text", "llama"])  # tied and untied LM heads
def test_trained_directory_loads_with_the_same_embeddings(tmp_path, family):
    base = save_tiny_causal_lm(tmp_path / "base", family)
    out = tmp_path / "out"
    start = StartingPoint.from_spec(str(base))
    settings = mntp_settings()
    stage = MNTPStage(start, TRAINING_TEXT, settings)
    train(stage, settings, out)
    record_stage(out, start, "mntp", None)

    in_memory = Encoder(stage.inner, AutoTokenizer.from_pretrained(base)).encode(TEXTS)
    loaded = Encoder.from_pretrained(out, device="cpu").encode(TEXTS)
    np.testing.assert_allclose(loaded, in_memory, atol=1e-5)
    untrained = Encoder.from_pretrained(base, device="cpu").encode(TEXTS)
    assert not np.allclose(untrained, loaded, atol=1e-3)  # the adapter really was applied


def test_simcse_on_top_of_mntp_round_trips(tmp_path, base_dir):
    out = tmp_path / "out"
    train_mntp(StartingPoint.from_spec(str(base_dir)), TRAINING_TEXT, mntp_settings(), out)
    start = StartingPoint.from_spec(str(out))
    settings = SimCSESettings(steps=2, batch_size=4, max_length=32, lr=1e-2, save_every=2, device="cpu")
    stage = SimCSEStage(start, TRAINING_TEXT, settings)
    train(stage, settings, out)
    record_stage(out, start, "simcse", "Find the passage")

    config = json.loads((out / "l2v-model.json").read_text())
    assert config["adapters"] == ["mntp", "simcse"]
    loaded = Encoder.from_pretrained(out, device="cpu")
    assert (loaded.pooling, loaded.query_instruction) == ("mean", "Find the passage")
    np.testing.assert_allclose(loaded.encode(TEXTS), stage.encoder.encode(TEXTS), atol=1e-5)
    mntp_only = Encoder.from_pretrained(base_dir, adapters=[out / "mntp"], device="cpu").encode(TEXTS)
    assert not np.allclose(mntp_only, loaded.encode(TEXTS), atol=1e-3)
    assert (out / "simcse-loss.png").read_bytes().startswith(b"\x89PNG")


def test_an_adapter_on_the_top_layers_only_round_trips_from_the_run_and_its_checkpoint(tmp_path, base_dir):
    start = StartingPoint.from_spec(str(base_dir))
    settings = SimCSESettings(
        steps=2, batch_size=4, max_length=32, lr=1e-2, save_every=2, device="cpu", lora_layers=1
    )
    stage = SimCSEStage(start, TRAINING_TEXT, settings)
    trained = [name for name, p in stage.model.named_parameters() if p.requires_grad]
    assert trained and all(".layers.1." in name for name in trained)  # the tiny model's top layer
    train(stage, settings, tmp_path / "out")
    record_stage(tmp_path / "out", start, "simcse", None)
    loaded = Encoder.from_pretrained(tmp_path / "out", device="cpu").encode(TEXTS)
    np.testing.assert_allclose(loaded, stage.encoder.encode(TEXTS), atol=1e-5)
    untrained = Encoder.from_pretrained(base_dir, device="cpu").encode(TEXTS)
    assert not np.allclose(untrained, loaded, atol=1e-3)
    # The last checkpoint is the same adapter, config included (it names the top layer's modules only).
    checkpoint = checkpoint_adapter(tmp_path / "out", "simcse", 2)
    targets = json.loads((checkpoint / "adapter_config.json").read_text())["target_modules"]
    assert targets and all(".1." in name for name in targets)
    from_checkpoint = Encoder.from_pretrained(base_dir, adapters=[checkpoint], device="cpu").encode(TEXTS)
    np.testing.assert_allclose(from_checkpoint, loaded, atol=1e-6)


def test_resume_continues_exactly_where_the_interrupted_run_stopped(tmp_path, base_dir):
    start = StartingPoint.from_spec(str(base_dir))
    settings = mntp_settings(steps=4)  # LoRA dropout on: resume must reproduce the random draws too
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    train_mntp(start, TRAINING_TEXT, settings, whole)
    # What a run killed during step 4 leaves: the step-2 checkpoint and a log with more lines than that.
    shutil.copytree(whole, resumed)
    shutil.rmtree(resumed / "checkpoints" / "mntp" / "step-0000004")
    shutil.rmtree(resumed / "mntp")
    (resumed / "l2v-model.json").unlink()

    assert train_mntp(start, TRAINING_TEXT, settings, resumed, resume=True) is not None
    expected = load_file(whole / "mntp" / "adapter_model.safetensors")
    got = load_file(resumed / "mntp" / "adapter_model.safetensors")
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6)

    def losses(directory: Path) -> list[float]:
        return [json.loads(line)["loss"] for line in (directory / "mntp-loss.jsonl").read_text().splitlines()]

    assert len(losses(resumed)) == 4  # the log kept steps 1-2 and the resumed run appended 3-4
    assert losses(resumed) == pytest.approx(losses(whole), abs=1e-6)
    # A finished stage is not trained again.
    assert train_mntp(start, TRAINING_TEXT, settings, resumed, resume=True) is None


def test_resume_with_other_settings_is_refused(tmp_path, base_dir):
    start = StartingPoint.from_spec(str(base_dir))
    train_mntp(start, TRAINING_TEXT, mntp_settings(), tmp_path / "out")
    shutil.rmtree(tmp_path / "out" / "mntp")
    (tmp_path / "out" / "l2v-model.json").unlink()
    with pytest.raises(L2VError, match=r"settings differ .*lr 0\.01 → 0\.001"):
        train_mntp(start, TRAINING_TEXT, mntp_settings(lr=1e-3), tmp_path / "out", resume=True)


def test_every_checkpoint_keeps_its_adapter_and_the_last_two_their_optimizer_state(tmp_path, base_dir):
    start = StartingPoint.from_spec(str(base_dir))
    train_mntp(start, TRAINING_TEXT, mntp_settings(steps=4, save_every=1), tmp_path / "out")
    steps = sorted((tmp_path / "out" / "checkpoints" / "mntp").iterdir())
    assert [p.name for p in steps] == [f"step-000000{n}" for n in (1, 2, 3, 4)]
    assert [(p / "state.pt").is_file() for p in steps] == [False, False, True, True]
    first = load_file(checkpoint_adapter(tmp_path / "out", "mntp", 1) / "adapter_model.safetensors")
    last = load_file(checkpoint_adapter(tmp_path / "out", "mntp", 4) / "adapter_model.safetensors")
    assert last.keys() == load_file(tmp_path / "out" / "mntp" / "adapter_model.safetensors").keys()
    assert any(not torch.equal(first[key], last[key]) for key in first)


def test_a_checkpoint_without_its_adapter_is_refused_on_resume(tmp_path, base_dir):
    start = StartingPoint.from_spec(str(base_dir))
    train_mntp(start, TRAINING_TEXT, mntp_settings(), tmp_path / "out")
    shutil.rmtree(tmp_path / "out" / "mntp")
    (tmp_path / "out" / "l2v-model.json").unlink()
    shutil.rmtree(checkpoint_adapter(tmp_path / "out", "mntp", 2))
    with pytest.raises(L2VError, match="cannot read checkpoint"):
        train_mntp(start, TRAINING_TEXT, mntp_settings(), tmp_path / "out", resume=True)


def test_existing_output_is_not_overwritten(tmp_path, base_dir):
    start = StartingPoint.from_spec(str(base_dir))
    train_mntp(start, TRAINING_TEXT, mntp_settings(), tmp_path / "out")
    adapter = (tmp_path / "out" / "mntp" / "adapter_model.safetensors").read_bytes()
    with pytest.raises(L2VError, match="already holds a trained model"):
        train_mntp(start, TRAINING_TEXT, mntp_settings(), tmp_path / "out")
    with pytest.raises(L2VError, match="already has a 'mntp' adapter"):
        train_mntp(
            StartingPoint.from_spec(str(tmp_path / "out")), TRAINING_TEXT, mntp_settings(), tmp_path / "b"
        )
    assert (tmp_path / "out" / "mntp" / "adapter_model.safetensors").read_bytes() == adapter


def test_mntp_needs_an_lm_head(tmp_path):
    base = save_tiny_model(tmp_path / "no-head", "llama")  # saved without its (untied) LM head
    with pytest.raises(L2VError, match="no LM head weights"):
        MNTPStage(StartingPoint.from_spec(str(base)), TRAINING_TEXT, mntp_settings())


def test_supervised_records_the_query_instruction(tmp_path, base_dir):
    texts = sorted(set(TRAINING_TEXT))
    pairs = [Pair(f"about {t.split()[1]}", t, texts[(i + 1) % len(texts)]) for i, t in enumerate(texts)]
    settings = SupervisedSettings(
        steps=2, batch_size=3, max_length=96, lr=1e-2, save_every=2, mini_batch=4, device="cpu"
    )
    start = StartingPoint.from_spec(str(base_dir))
    losses = train_supervised(start, [PairSource("pairs", pairs)], settings, tmp_path / "out")
    assert len(losses) == 2 and all(np.isfinite(losses))
    # 3 queries against 3 positives + 3 hard negatives: an untrained model is near log(6).
    assert abs(losses[0] - np.log(6)) < 1.0
    encoder = Encoder.from_pretrained(tmp_path / "out", device="cpu")
    assert encoder.query_instruction == "Given a query, retrieve relevant passages"
    assert encoder.encode_queries(["about cat"]).shape == (1, 32)


def test_a_second_supervised_stage_goes_on_top_of_the_first(tmp_path, base_dir):
    texts = sorted(set(TRAINING_TEXT))
    sources = [PairSource("pairs", [Pair(f"about {t.split()[1]}", t) for t in texts])]
    settings = SupervisedSettings(steps=1, batch_size=3, max_length=64, save_every=1, device="cpu")
    train_supervised(StartingPoint.from_spec(str(base_dir)), sources, settings, tmp_path / "first")
    on_top = StartingPoint.from_spec(str(tmp_path / "first"))
    assert free_adapter_name(on_top, "supervised") == "supervised-2"
    train_supervised(on_top, sources, settings, tmp_path / "second")
    config = json.loads((tmp_path / "second" / "l2v-model.json").read_text())
    assert config["adapters"] == ["supervised", "supervised-2"]
    assert Encoder.from_pretrained(tmp_path / "second", device="cpu").encode(["a cat"]).shape == (1, 32)


def test_ship_default_ships_a_checkpoint_of_a_stopped_run_as_it_was_trained(tmp_path, base_dir):
    start_dir = tmp_path / "start"  # a model directory without an instruction, as unsupervised stages leave
    ModelDirConfig(base_model=str(base_dir), query_instruction=None).save(start_dir)
    texts = sorted(set(TRAINING_TEXT))
    sources = [PairSource("pairs", [Pair(f"about {t.split()[1]}", t) for t in texts])]
    settings = SupervisedSettings(
        steps=2, batch_size=3, max_length=64, lr=1e-2, save_every=1, lora_layers=1, device="cpu"
    )
    run = tmp_path / "run"
    train_supervised(StartingPoint.from_spec(str(start_dir)), sources, settings, run)
    shutil.rmtree(run / "supervised")  # what a run stopped after its step-1 checkpoint leaves
    (run / "l2v-model.json").unlink()

    script = Path(__file__).resolve().parents[1] / "scripts" / "ship_default.py"
    command = [sys.executable, script, run, "--checkpoint", "supervised:1", "--start", start_dir]
    subprocess.run([*command, "--to", tmp_path / "shipped"], check=True, capture_output=True)
    shipped = Encoder.from_pretrained(tmp_path / "shipped", device="cpu")
    assert shipped.query_instruction == settings.query_instruction
    targets = json.loads((tmp_path / "shipped" / "supervised" / "adapter_config.json").read_text())
    assert all(".1." in name for name in targets["target_modules"])
    checkpoint = checkpoint_adapter(run, "supervised", 1)
    expected = Encoder.from_pretrained(base_dir, adapters=[checkpoint], device="cpu").encode(TEXTS)
    np.testing.assert_allclose(shipped.encode(TEXTS), expected, atol=1e-3)  # shipped in fp16

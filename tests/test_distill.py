"""`train distill`: a tiny random student learns from a tiny random sentence-transformers teacher."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TRAINING_TEXT, assert_user_error, build_tokenizer, run_cli
from transformers import BertConfig, BertModel

from llm2vec_search.encoder import Encoder
from llm2vec_search.encoder.layers import layer_view
from llm2vec_search.errors import L2VError
from llm2vec_search.training.distill import (
    DistillSettings,
    DistillText,
    distill_loss,
    fit_head,
    read_distill_texts,
    train_distill,
)
from llm2vec_search.training.features import TopLayers, frozen_features
from llm2vec_search.training.setup import StartingPoint
from llm2vec_search.training.teacher import Teacher

TEXTS = [DistillText(text, query=i % 3 == 0) for i, text in enumerate(dict.fromkeys(TRAINING_TEXT))] + [
    DistillText(f"sentence number {i} about the {word}", query=i % 2 == 0)
    for i, word in enumerate(["cat", "dog", "park", "market", "protein", "fox", "vector", "token"] * 3)
]


def save_tiny_teacher(directory: Path, dim: int = 24) -> Path:
    """A sentence-transformers folder as the teacher package ships it: BERT weights, tokenizer, pooling."""
    tokenizer = build_tokenizer()
    torch.manual_seed(1)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=dim,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64}))
    (directory / "1_Pooling").mkdir()
    (directory / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    return directory


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Teacher:
    return Teacher(save_tiny_teacher(tmp_path_factory.mktemp("teacher")))


def settings(**overrides) -> DistillSettings:
    values = dict(steps=6, batch_size=8, lr=5e-3, warmup_steps=0, lora_layers=1, save_every=3, max_length=96)
    return DistillSettings(**{**values, **overrides})


def test_teacher_vectors_are_normalized_mean_pooled(teacher):
    vectors = teacher.encode(["a dog in the park", "proteins fold"])
    assert vectors.shape == (2, 24)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_top_layers_from_cached_features_equal_the_full_model(tiny_model_dir):
    """Splitting the network at a layer and running the top from the bottom's output changes nothing."""
    encoder = Encoder.from_pretrained(tiny_model_dir, device="cpu")
    texts = ["The cat sat on the mat.", "Vector search finds similar documents by meaning and more."]
    items = encoder.tokenize(texts, "Find the passage")
    bottom = layer_view(encoder.model, 0, 1, final_norm=False)
    top = layer_view(encoder.model, 1, None, final_norm=True)
    features = frozen_features(bottom, items, encoder.tokenizer.pad_token_id, torch.device("cpu"))
    split = TopLayers(torch.nn.Module(), top, torch.nn.Identity(), "mean").eval()
    with torch.no_grad():
        pooled = split(features, [0, 1], torch.device("cpu"))
        whole = encoder.forward(items)
    assert torch.allclose(pooled, whole, atol=1e-5)


def test_fit_head_recovers_a_linear_map():
    torch.manual_seed(0)
    inputs = torch.randn(200, 16)
    weight, bias = torch.randn(8, 16), torch.randn(8)
    head = fit_head(inputs, inputs @ weight.T + bias, ridge=1e-8)
    assert torch.allclose(head.weight, weight, atol=1e-3)
    assert torch.allclose(head.bias, bias, atol=1e-3)


def test_loss_is_zero_when_the_student_matches_the_teacher():
    teacher = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    assert distill_loss(3 * teacher, teacher, relational_weight=1.0).item() == pytest.approx(0, abs=1e-6)
    assert distill_loss(torch.randn(4, 8), teacher, relational_weight=1.0).item() > 0.1


def test_distilled_model_loads_with_its_head_and_moved_towards_the_teacher(tiny_model_dir, teacher, tmp_path):
    start = StartingPoint.from_spec(str(tiny_model_dir))
    out = tmp_path / "student"
    losses = train_distill(start, TEXTS, teacher, settings(steps=12), out)
    assert losses is not None and len(losses) == 12
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    config = json.loads((out / "l2v-model.json").read_text())
    assert config["adapters"] == ["distill"] and config["head"] == "distill/head.safetensors"
    student = Encoder.from_pretrained(out, device="cpu")
    assert student.dim == teacher.dim
    texts = [item.text for item in TEXTS if not item.query]
    vectors = student.encode(texts)
    assert vectors.shape == (len(texts), teacher.dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # The student's vectors point where the teacher's do, more than an untrained head's could by chance.
    assert float(np.mean(np.sum(vectors * teacher.encode(texts), axis=1))) > 0.5
    # A checkpoint holds its head too, so it loads and ships as it is.
    assert (out / "checkpoints" / "distill" / "step-0000006" / "adapter" / "head.safetensors").is_file()


def test_a_distilled_model_is_distilled_again_on_top_with_its_own_head(tiny_model_dir, teacher, tmp_path):
    first = tmp_path / "first"
    train_distill(StartingPoint.from_spec(str(tiny_model_dir)), TEXTS, teacher, settings(), first)
    second = tmp_path / "second"
    losses = train_distill(StartingPoint.from_spec(str(first)), TEXTS, teacher, settings(), second)
    assert losses is not None
    config = json.loads((second / "l2v-model.json").read_text())
    assert config["adapters"] == ["distill", "distill-2"] and config["head"] == "distill-2/head.safetensors"
    texts = [item.text for item in TEXTS if not item.query]
    vectors = Encoder.from_pretrained(second, device="cpu").encode(texts)
    assert float(np.mean(np.sum(vectors * teacher.encode(texts), axis=1))) > 0.5
    # Shipped, it keeps only the head in use and gives the same vectors (adapters in fp16).
    script = Path(__file__).resolve().parents[1] / "scripts" / "ship_default.py"
    shipped = tmp_path / "shipped"
    subprocess.run([sys.executable, script, second, "--to", shipped], check=True, capture_output=True)
    assert not (shipped / "distill" / "head.safetensors").exists()
    shipped_vectors = Encoder.from_pretrained(shipped, device="cpu").encode(texts)
    np.testing.assert_allclose(shipped_vectors, vectors, atol=1e-3)


def test_a_pruned_student_is_distilled_and_saved_pruned(tiny_model_dir, teacher, tmp_path):
    start = StartingPoint.from_spec(str(tiny_model_dir)).pruned(1)
    out = tmp_path / "pruned"
    train_distill(start, TEXTS, teacher, settings(), out)
    assert json.loads((out / "l2v-model.json").read_text())["layers"] == 1
    student = Encoder.from_pretrained(out, device="cpu")
    assert len(student.model.layers) == 1
    texts = [item.text for item in TEXTS if not item.query]
    assert float(np.mean(np.sum(student.encode(texts) * teacher.encode(texts), axis=1))) > 0.5


def test_keep_layers_beyond_the_model_is_refused_before_any_work(tiny_model_dir, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("one sentence\nanother sentence\n")
    result = run_cli(
        "train", "distill", "--model", str(tiny_model_dir), "--out", str(tmp_path / "out"),
        "--passages", str(texts), "--warmup-steps", "0", "--keep-layers", "3",
        "--teacher", str(tmp_path / "no-teacher"),
    )  # fmt: skip
    assert_user_error(result, "keep-layers must be in [1, 2] for this model, got 3")


def test_zero_steps_fit_the_head_alone_and_train_nothing_else(tiny_model_dir, teacher, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("".join(item.text + "\n" for item in TEXTS))
    out = tmp_path / "head-only"
    result = run_cli(
        "train", "distill", "--model", str(tiny_model_dir), "--out", str(out), "--passages", str(texts),
        "--steps", "0", "--lora-layers", "1", "--max-length", "96", "--teacher", str(teacher.directory),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "distill: 0 steps →" in result.stdout
    student = Encoder.from_pretrained(out, device="cpu")
    plain = Encoder.from_pretrained(tiny_model_dir, device="cpu")
    sentences = [item.text for item in TEXTS]
    with torch.no_grad():
        expected = torch.nn.functional.normalize(student.project(plain.forward(plain.tokenize(sentences))))
    # The trunk is the starting model's, unchanged; the vectors are its pooled output through the head.
    np.testing.assert_allclose(student.encode(sentences), expected.numpy(), atol=1e-4)
    assert student.dim == teacher.dim


def test_resumed_run_continues_to_the_same_adapter(tiny_model_dir, teacher, tmp_path):
    start = StartingPoint.from_spec(str(tiny_model_dir))
    whole = tmp_path / "whole"
    train_distill(start, TEXTS, teacher, settings(), whole)
    cut = tmp_path / "cut"
    train_distill(start, TEXTS, teacher, settings(steps=6, save_every=3), cut)
    # Drop the last checkpoint and the finished adapter: resuming redoes steps 4-6 from step 3's state.
    import shutil

    shutil.rmtree(cut / "checkpoints" / "distill" / "step-0000006")
    shutil.rmtree(cut / "distill")
    (cut / "l2v-model.json").unlink()
    train_distill(start, TEXTS, teacher, settings(), cut, resume=True)
    texts = [item.text for item in TEXTS]
    a = Encoder.from_pretrained(whole, device="cpu").encode(texts)
    b = Encoder.from_pretrained(cut, device="cpu").encode(texts)
    assert np.allclose(a, b, atol=1e-4)


def test_texts_from_files_with_fields_are_deduplicated_and_cut(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    rows = [{"query": f"question {i % 5}", "positive": " ".join(["word"] * 50) + f" {i}"} for i in range(10)]
    pairs.write_text("".join(json.dumps(row) + "\n" for row in rows))
    texts = read_distill_texts([f"{pairs}:query"], [f"{pairs}:positive"], None, max_words=10, seed=0)
    queries = [t for t in texts if t.query]
    assert len(queries) == 5
    assert all(len(t.text.split()) == 10 for t in texts if not t.query)
    with pytest.raises(L2VError, match="no texts"):
        read_distill_texts([], [], None, 10, 0)

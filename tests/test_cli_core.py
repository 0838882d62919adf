"""The CLI's core commands, run as real subprocesses."""

import json

import pytest

from tests.conftest import run_cli


def test_help_lists_the_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("models", "embed"):
        assert command in result.stdout


def test_models_lists_the_default_base():
    result = run_cli("models")
    assert result.returncode == 0, result.stderr
    assert "gemma3-270m" in result.stdout and "smollm2-135m" in result.stdout


def test_models_says_what_the_first_use_costs(monkeypatch):
    """The figure comes from one place, which names the command that measures it (the cache here is empty)."""
    from llm2vec_search.encoder.models import CONVERSION_TIME

    monkeypatch.setenv("COLUMNS", "250")
    result = run_cli("models")
    assert result.returncode == 0, result.stderr
    assert f"converts on first use, {CONVERSION_TIME}" in result.stdout


def test_models_card_says_how_the_default_was_trained():
    result = run_cli("models", "--card")
    assert result.returncode == 0, result.stderr
    for words in ("Training", "SciFact", "STS-B", "CPU"):
        assert words in result.stdout


def test_embed_json_gives_one_vector_per_text(tiny_model_dir):
    result = run_cli("embed", "the cat sat", "a dog ran", "--model", str(tiny_model_dir), "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["dim"] == 32
    assert [row["text"] for row in payload["data"]] == ["the cat sat", "a dog ran"]
    assert all(len(row["embedding"]) == 32 for row in payload["data"])


def test_embed_prints_a_similarity_table(tiny_model_dir):
    result = run_cli(
        "embed", "the cat sat", "a dog ran", "--model", str(tiny_model_dir), "--instruction", "Find"
    )
    assert result.returncode == 0, result.stderr
    assert "cosine similarity" in result.stdout and "1.000" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["embed", "hello", "--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["embed", "  ", "--model", "no-such-model"], "text 0 is empty"),
        (["embed", "hello", "--model", "/nowhere/x.gguf"], "GGUF file not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

"""`l2v-search train` through the real CLI in a subprocess, on a tiny model directory."""

import json
from functools import partial

import pytest

from llm2vec_search.encoder import Encoder
from tests.conftest import run_cli, save_tiny_causal_lm

SENTENCES = [
    "The cat sat on the mat and looked at the dog.",
    "A dog is running in the park with a ball.",
    "Stock markets fell sharply after the announcement.",
    "Proteins fold into three dimensional structures.",
    "Vector search finds similar documents by meaning.",
]


train_cli = partial(run_cli, "train", timeout=300)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-cli")
    save_tiny_causal_lm(root / "base")
    (root / "paragraphs.jsonl").write_text("".join(json.dumps({"text": s}) + "\n" for s in SENTENCES))
    (root / "sentences.txt").write_text("\n".join(SENTENCES) + "\n")
    return root


def test_train_all_end_to_end(workdir):
    common = ["--model", "base", "--out", "model", "--mntp-data", "paragraphs.jsonl"]
    common += ["--simcse-data", "sentences.txt", "--steps", "3", "--batch-size", "4"]
    result = train_cli(
        "all", *common, "--max-length", "32", "--save-every", "2", "--mini-batch", "3", cwd=workdir
    )
    assert result.returncode == 0, result.stderr
    assert "mntp: 3 steps" in result.stdout and "simcse: 3 steps" in result.stdout

    out = workdir / "model"
    model_config = json.loads((out / "l2v-model.json").read_text())
    assert model_config["adapters"] == ["mntp", "simcse"]
    assert model_config["base_model"] == str((workdir / "base").resolve())
    assert model_config["query_instruction"] == "Given a query, retrieve relevant passages"
    for stage in ("mntp", "simcse"):
        assert (out / stage / "adapter_config.json").is_file()
        assert (out / f"{stage}-loss.png").read_bytes().startswith(b"\x89PNG")
        steps = [json.loads(line)["step"] for line in (out / f"{stage}-loss.jsonl").read_text().splitlines()]
        assert steps == [1, 2, 3]
        assert sorted(p.name for p in (out / "checkpoints" / stage).iterdir()) == [
            "step-0000002",
            "step-0000003",
        ]
    train_config = json.loads((out / "train-config.json").read_text())
    assert train_config["stages"]["mntp"]["settings"]["mask_prob"] == 0.2
    assert train_config["stages"]["simcse"]["settings"]["dropout"] == 0.3
    assert train_config["stages"]["simcse"]["cli"]["mini_batch"] == 3
    assert {"torch", "transformers", "peft"} <= train_config["versions"].keys()
    assert Encoder.from_pretrained(out, device="cpu").encode(["a cat"]).shape == (1, 32)

    again = train_cli("all", *common, "--max-length", "32", "--resume", cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert "mntp: already trained" in again.stdout and "simcse: already trained" in again.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["mntp", "missing.txt", "--model", "base", "--out", "x"], "training data file not found"),
        (
            ["mntp", "sentences.txt", "--model", "base", "--out", "x", "--steps", "0"],
            "steps must be at least 1",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(workdir, args, message):
    result = train_cli(*args, cwd=workdir)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (workdir / "x" / "l2v-model.json").exists()

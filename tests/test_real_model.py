"""End-to-end checks with the real default model (converted once into the user cache, ~1 min)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import real_model_cache

from llm2vec_search.encoder import Encoder, check_attention

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_encoder():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("L2V_SEARCH_CACHE_DIR", str(real_model_cache()))
        yield Encoder.from_pretrained("default", device="cpu")


def test_default_model_finds_the_paraphrase(default_encoder):
    query, paraphrase, unrelated = default_encoder.encode(
        [
            "A man is playing a guitar on stage.",
            "On stage, a guitarist performs a song.",
            "The central bank raised interest rates again.",
        ]
    )
    assert float(query @ paraphrase) > float(query @ unrelated)


def test_default_model_attends_both_ways_in_fp32(default_encoder):
    check = check_attention(default_encoder.model)
    assert check.bidirectional, check
    assert default_encoder.dim == 640


SAMPLE = Path(__file__).resolve().parents[1] / "sample_corpus"


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_index_and_query_sample_articles_from_the_cli(tmp_path_factory, mode):
    """The main job end to end with the default model: `index` three sample articles, then `query` them."""
    workdir = tmp_path_factory.getbasetemp() / "sample-e2e"
    env = {**os.environ, "L2V_SEARCH_CACHE_DIR": str(real_model_cache())}
    if not (workdir / "indexes" / "default").exists():
        docs = workdir / "docs"
        docs.mkdir(parents=True)
        for name in ("malacidin.md", "seattle-kraken.md", "lid-tectonics.md"):
            shutil.copy(SAMPLE / name, docs / name)
        indexed = subprocess.run(
            [sys.executable, "-m", "llm2vec_search", "index", "docs"],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert indexed.returncode == 0, indexed.stderr
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "llm2vec_search",
            "query",
            "antibiotic made by soil bacteria",
            "--mode",
            mode,
            "-k",
            "3",
            "--json",
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)["hits"]
    assert hits[0]["path"].endswith("malacidin.md")

"""`l2v-search query` one-shot, run as real subprocesses against a real index built by `l2v-search index`.

Most cases use BM25 mode (no model load, about a second each); the dense and hybrid paths load the tiny model.
"""

import json
import re
from pathlib import Path

import pytest

from llm2vec_search.indexing.options import DEFAULT_MODE
from llm2vec_search.indexing.search import HIT_FIELDS
from tests.conftest import DOCS, Terminal, cli_command, run_cli, write_files

BOLD_YELLOW = "\x1b[1;33m"


def build_docs_index(workdir: Path, model_dir: Path, name: str = "default") -> Path:
    """Write DOCS under workdir/docs and index them with `l2v-search index` into workdir/indexes/NAME."""
    write_files(workdir / "docs", DOCS)
    result = run_cli("index", "docs", "--model", str(model_dir), "--name", name, cwd=workdir)
    assert result.returncode == 0, result.stderr
    return workdir / "indexes" / name


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_model_dir) -> Path:
    folder = tmp_path_factory.mktemp("query")
    build_docs_index(folder, tiny_model_dir)
    return folder


def test_plain_output_when_piped_has_one_block_per_hit(workdir):
    result = run_cli("query", "install the package", "--mode", "bm25", "-k", "2", cwd=workdir)
    assert result.returncode == 0, result.stderr
    blocks = result.stdout.strip().split("\n\n")
    assert 1 <= len(blocks) <= 2
    first = blocks[0].splitlines()
    assert re.fullmatch(r"1\. docs/guide\.md:\d+-\d+  \d+\.\d{4}", first[0])
    assert first[1] == "   Guide > Install"
    assert "pip install to install the package" in first[2]
    assert "\x1b[" not in result.stdout  # no colour codes in a pipe


def test_json_uses_the_default_mode(workdir):
    result = run_cli("query", "ball for the dog", "--json", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["mode"] == DEFAULT_MODE


def test_json_has_query_settings_and_every_hit_field(workdir):
    result = run_cli("query", "ball for the dog", "--json", "-k", "3", "--mode", "hybrid", cwd=workdir)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["query"], document["mode"], document["k"]) == ("ball for the dog", "hybrid", 3)
    hits = document["hits"]
    assert 1 <= len(hits) <= 3
    assert [hit["rank"] for hit in hits] == list(range(1, len(hits) + 1))
    for hit in hits:
        assert set(hit) == set(HIT_FIELDS)
        source = Path(hit["path"]).read_text()
        assert source[hit["start_char"] : hit["end_char"]] == hit["text"]
    assert any(hit["dense_score"] is not None for hit in hits)
    assert any(hit["bm25_score"] is not None for hit in hits)


def test_jsonl_prints_one_hit_per_line(workdir):
    result = run_cli("query", "ball", "--jsonl", "--mode", "bm25", "-k", "2", cwd=workdir)
    assert result.returncode == 0, result.stderr
    hits = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(hits) == 2
    assert all(set(hit) == set(HIT_FIELDS) and hit["bm25_score"] is not None for hit in hits)
    assert {Path(hit["path"]).name for hit in hits} == {"notes.txt", "fetch.py"}


def test_path_filter_keeps_only_matching_files(workdir):
    for glob, names in (("*.txt", ["notes.txt"]), ("code/*", ["fetch.py"])):
        result = run_cli("query", "ball", "--mode", "bm25", "--path", glob, "--json", cwd=workdir)
        assert result.returncode == 0, result.stderr
        hits = json.loads(result.stdout)["hits"]
        assert [Path(hit["path"]).name for hit in hits] == names
        assert json.loads(result.stdout)["path_glob"] == glob


def test_no_hits_exits_1(workdir):
    result = run_cli("query", "zebra", "--mode", "bm25", cwd=workdir)
    assert (result.returncode, result.stdout) == (1, "")
    assert "no hits" in result.stderr
    as_json = run_cli("query", "ball", "--mode", "bm25", "--path", "*.rst", "--json", cwd=workdir)
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["hits"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["query", "dog", "--name", "missing"], "l2v-search index"),
        (["query", "dog", "--mode", "fuzzy"], "unknown search mode 'fuzzy'"),
        (["query", "dog", "-k", "0"], "k must be from 1 to 10000"),
        (["query", "dog", "--json", "--jsonl"], "choose one of --json and --jsonl"),
        (["query", "   "], "the query is empty"),
        (["query", "--json"], "--json and --jsonl need a query TEXT"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(workdir, args, message):
    result = run_cli(*args, cwd=workdir)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_missing_index_lists_the_indexes_that_exist(workdir):
    result = run_cli("query", "dog", "--name", "nope", cwd=workdir)
    assert result.returncode == 2
    assert "indexes here: default" in result.stderr


def test_table_on_a_terminal_with_highlighted_terms(workdir):
    terminal = Terminal(cli_command("query", "install the package", "--mode", "bm25", "-k", "2"), workdir)
    assert terminal.finish() == 0
    text = terminal.text
    for header in ("score", "location", "heading", "snippet"):
        assert header in text
    assert re.search(r"│\s+1\s+│\s+\d+\.\d{4}\s+│\s+docs/guide\.md:\d+-\d+", text)
    assert "Guide > Install" in text
    assert f"{BOLD_YELLOW}install" in terminal.output  # the query's words are highlighted
    assert f"{BOLD_YELLOW}package" in terminal.output

"""Hostile command-line arguments, one table row each: a real `l2v-search` subprocess must answer with one
error line and exit code 2, and leave the index it was pointed at as it was."""

import fcntl

import pytest

from tests.conftest import assert_user_error, build_corpus_index, cli_status, run_cli

MODEL = "{model}"  # replaced by the tiny model's folder

CLI_CASES = {
    "k-beyond-int64": (["query", "plants", "-k", "9223372036854775808"], "k must be from 1 to 10000"),
    "chunk-tokens-zero": (
        ["index", "corpus", "--name", "fresh", "--chunk-tokens", "0", "--model", MODEL],
        "chunk-tokens must be at least 8, got 0",
    ),
    "name-with-dotdot": (["index", "corpus", "--name", "a b/../c", "--model", MODEL], "may not contain '..'"),
    # Rich markup in a path is printed as written (it raised MarkupError, a traceback, before).
    "markup-in-a-path": (["status", "--index-dir", "no[/red]where"], "no[/red]where/default"),
}


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_model_dir):
    """One index of the shared corpus that every case runs against (none of them may change it)."""
    return build_corpus_index(tmp_path_factory.mktemp("hostile-cli"), tiny_model_dir)


@pytest.mark.parametrize("args, message", CLI_CASES.values(), ids=CLI_CASES.keys())
def test_hostile_argument_is_one_error_line(args, message, indexed, tiny_model_dir):
    before = cli_status(indexed)
    result = run_cli(*(str(tiny_model_dir) if arg == MODEL else arg for arg in args), cwd=indexed)
    assert_user_error(result, message)
    assert sorted(p.name for p in (indexed / "indexes").iterdir()) == ["default"]
    assert cli_status(indexed) == before


def test_second_rebuild_waits_for_the_lock_before_touching_anything(indexed):
    """A rebuild in progress (its lock held, its side folder filling) survives a second `--rebuild`."""
    staging = indexed / "indexes" / ".default.rebuild"
    staging.mkdir()
    (staging / "index.db").write_text("the first rebuild's work")
    with open(indexed / "indexes" / "default" / "write.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = run_cli("index", "corpus", "--rebuild", cwd=indexed)
    assert_user_error(result, "is being updated by another process")
    assert (staging / "index.db").read_text() == "the first rebuild's work"
    staging.joinpath("index.db").unlink()
    staging.rmdir()

"""`l2v-search index` and `status` as a user runs them: real subprocesses, a tiny model directory."""

from pathlib import Path

import pytest

from tests.conftest import CORPUS, assert_user_error, cli_status, run_cli, write_files


@pytest.fixture
def workdir(tmp_path, tiny_model_dir) -> Path:
    write_files(tmp_path / "corpus", CORPUS)
    return tmp_path


def test_index_status_and_incremental_rerun(workdir, tiny_model_dir):
    first = run_cli("index", "corpus", "--model", str(tiny_model_dir), cwd=workdir)
    assert first.returncode == 0, first.stderr
    assert "files added" in first.stdout and "size on disk" in first.stdout
    state = cli_status(workdir)
    assert state["files"] == 3 and state["chunks"] >= 3
    assert state["model"] == str(tiny_model_dir) and state["dim"] == 32
    (workdir / "corpus" / "notes" / "todo.txt").unlink()
    (workdir / "corpus" / "extra.txt").write_text("A brand new file about tides.\n")
    second = run_cli("index", "corpus", cwd=workdir)  # the index remembers its model
    assert second.returncode == 0, second.stderr
    last = cli_status(workdir)["last_run"]
    assert (last["files_added"], last["files_removed"], last["files_unchanged"]) == (1, 1, 2)
    table = run_cli("status", cwd=workdir)
    assert "chunks" in table.stdout and str(tiny_model_dir) in table.stdout


def test_user_errors_are_one_line_exit_2(workdir, tiny_model_dir):
    model = ("--model", str(tiny_model_dir))
    assert_user_error(run_cli("index", "missing-dir", *model, cwd=workdir), "not found")
    (workdir / "empty").mkdir()
    assert_user_error(run_cli("index", "empty", "--name", "e", *model, cwd=workdir), "nothing to index")
    assert not (workdir / "indexes" / "e").exists()
    assert_user_error(run_cli("status", "--name", "nope", cwd=workdir), "no index named 'nope'")
    assert_user_error(
        run_cli("index", "corpus", "--index-type", "annoy", *model, cwd=workdir), "unknown index type"
    )


def test_ray_options_parse_as_the_readme_writes_them(workdir):
    """`index DIR --ray` (a bare flag, last) parses; what then fails is the user's input, in one line. (The
    embedding itself, local instance and cluster, is test_ray.py's.)"""
    assert_user_error(run_cli("index", "missing-dir", "--ray", cwd=workdir), "path not found")
    bad = run_cli("index", "corpus", "--ray-address", "no address", cwd=workdir)
    assert_user_error(bad, "--ray-address 'no address' is not one of")
    assert_user_error(run_cli("index", "corpus", "--ray-workers", "2", cwd=workdir), "needs --ray")
    assert not (workdir / "indexes").exists()


def test_changed_chunking_needs_rebuild(workdir, tiny_model_dir):
    assert (
        run_cli("index", "corpus", "--name", "c", "--model", str(tiny_model_dir), cwd=workdir).returncode == 0
    )
    refused = run_cli("index", "corpus", "--name", "c", "--chunk-tokens", "16", cwd=workdir)
    assert_user_error(refused, "--rebuild")
    rebuilt = run_cli("index", "corpus", "--name", "c", "--chunk-tokens", "16", "--rebuild", cwd=workdir)
    assert rebuilt.returncode == 0, rebuilt.stderr
    state = cli_status(workdir, "c")
    assert state["chunk_tokens"] == 16 and state["files"] == 3

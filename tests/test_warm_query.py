"""A one-shot `query` asks a running `serve` that has the index (its model already loaded) and falls back to
searching itself when there is none: real `serve` and `query` subprocesses over HTTP on 127.0.0.1."""

import json
import shutil

import pytest

from llm2vec_search.indexing import Index
from tests.conftest import cli_env, free_port, run_cli, save_tiny_model, start_serve

NOTES = {
    "cats.md": "# Cats\n\nThe cat sat on the mat and looked at the dog.\n",
    "markets.md": "# Markets\n\nStock markets fell sharply after the announcement.\n",
}


@pytest.fixture
def notes_index(tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    for name, text in NOTES.items():
        (notes / name).write_text(text)
    model_dir = save_tiny_model(tmp_path / "model")
    with Index.open("notes", root=tmp_path / "indexes", model=str(model_dir), create=True) as index:
        index.update([notes])
    env = cli_env(L2V_SEARCH_CACHE_DIR=str(tmp_path / "cache"))
    return tmp_path, model_dir, env


def same_search(first: dict, second: dict) -> bool:
    """The same hits in the same order with the same fields, scores equal to float precision."""
    scores = ("score", "dense_score", "bm25_score")

    def fields(document: dict) -> list[dict]:
        return [{k: v for k, v in hit.items() if k not in scores} for hit in document["hits"]]

    def numbers(document: dict) -> list[float | None]:
        return [hit[name] for hit in document["hits"] for name in scores]

    return fields(first) == fields(second) and numbers(first) == pytest.approx(numbers(second), abs=1e-5)


def test_one_shot_query_is_answered_by_a_running_server_and_falls_back_without_one(notes_index):
    tmp, model_dir, env = notes_index
    query = ["query", "a cat on a mat", "--name", "notes", "--index-dir", str(tmp / "indexes"), "--json"]
    local = run_cli(*query, "--no-server", env=env, timeout=300)
    assert local.returncode == 0, local.stderr
    where = ["--name", "notes", "--index-dir", str(tmp / "indexes")]
    args = [*where, "--port", str(free_port()), "--threads", "1"]
    server = start_serve(args, env, tmp / "server.log")
    try:
        entries = list((tmp / "cache" / "servers").glob("*.json"))
        assert [json.loads(e.read_text())["pid"] for e in entries] == [server.pid]
        shutil.rmtree(model_dir)  # from now on only the server, which loaded the model, can embed the query
        served = run_cli(*query, env=env, timeout=300)
        assert served.returncode == 0, served.stderr
        assert same_search(json.loads(served.stdout), json.loads(local.stdout))
        here = run_cli(*query, "--no-server", env=env, timeout=300)
        assert here.returncode == 2  # searching here needs the model: gone
        assert run_cli(*query, "--mode", "bm25", "--no-server", env=env, timeout=300).returncode == 0
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert not list((tmp / "cache" / "servers").glob("*.json"))  # the server took its entry with it
    fallback = run_cli(*query, env=env, timeout=300)
    assert fallback.returncode == 2 and "Traceback" not in fallback.stderr  # searched here: no model


def test_a_dead_servers_entry_is_ignored_and_removed(notes_index):
    tmp, _, env = notes_index
    servers = tmp / "cache" / "servers"
    servers.mkdir(parents=True)
    stale = servers / "999999.json"
    folder = str((tmp / "indexes" / "notes").resolve())
    stale.write_text(
        json.dumps(
            {"pid": 999999, "url": "http://127.0.0.1:9", "indexes": {folder: "notes"}, "needs_key": False}
        )
    )
    query = ["query", "cat", "--name", "notes", "--index-dir", str(tmp / "indexes"), "--json"]
    result = run_cli(*query, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["hits"]
    assert not stale.exists()

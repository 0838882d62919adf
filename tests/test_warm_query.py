"""A one-shot `query` asks a running `serve` that has the index (its model already loaded) and falls back to
searching itself when there is none: real `serve` and `query` subprocesses over HTTP on 127.0.0.1."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from llm2vec_search.indexing import Index
from tests.conftest import free_port, save_tiny_model

NOTES = {
    "cats.md": "# Cats\n\nThe cat sat on the mat and looked at the dog.\n",
    "markets.md": "# Markets\n\nStock markets fell sharply after the announcement.\n",
}


def l2v(env: dict, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "llm2vec_search", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def notes_index(tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    for name, text in NOTES.items():
        (notes / name).write_text(text)
    model_dir = save_tiny_model(tmp_path / "model")
    with Index.open("notes", root=tmp_path / "indexes", model=str(model_dir), create=True) as index:
        index.update([notes])
    env = {**os.environ, "L2V_SEARCH_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("L2V_SEARCH_API_KEY", None)
    return tmp_path, model_dir, env


def same_search(first: dict, second: dict) -> bool:
    """The same hits in the same order with the same fields, scores equal to float precision."""
    scores = ("score", "dense_score", "bm25_score")

    def fields(document: dict) -> list[dict]:
        return [{k: v for k, v in hit.items() if k not in scores} for hit in document["hits"]]

    def numbers(document: dict) -> list[float | None]:
        return [hit[name] for hit in document["hits"] for name in scores]

    return fields(first) == fields(second) and numbers(first) == pytest.approx(numbers(second), abs=1e-5)


def start_server(env: dict, index_dir: Path, port: int, log: Path) -> subprocess.Popen:
    args = ["serve", "--name", "notes", "--index-dir", str(index_dir), "--port", str(port), "--threads", "1"]
    with log.open("w") as log_file:
        server = subprocess.Popen([sys.executable, "-m", "llm2vec_search", *args], env=env, stderr=log_file)
    deadline = time.monotonic() + 600
    while True:
        assert server.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)


def test_one_shot_query_is_answered_by_a_running_server_and_falls_back_without_one(notes_index):
    tmp, model_dir, env = notes_index
    query = ["query", "a cat on a mat", "--name", "notes", "--index-dir", str(tmp / "indexes"), "--json"]
    local = l2v(env, *query, "--no-server")
    assert local.returncode == 0, local.stderr
    server = start_server(env, tmp / "indexes", free_port(), tmp / "server.log")
    try:
        entries = list((tmp / "cache" / "servers").glob("*.json"))
        assert [json.loads(e.read_text())["pid"] for e in entries] == [server.pid]
        shutil.rmtree(model_dir)  # from now on only the server, which loaded the model, can embed the query
        served = l2v(env, *query)
        assert served.returncode == 0, served.stderr
        assert same_search(json.loads(served.stdout), json.loads(local.stdout))
        assert l2v(env, *query, "--no-server").returncode == 2  # searching here needs the model: gone
        assert l2v(env, *query, "--mode", "bm25", "--no-server").returncode == 0
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert not list((tmp / "cache" / "servers").glob("*.json"))  # the server took its entry with it
    fallback = l2v(env, *query)
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
    result = l2v(env, "query", "cat", "--name", "notes", "--index-dir", str(tmp / "indexes"), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["hits"]
    assert not stale.exists()

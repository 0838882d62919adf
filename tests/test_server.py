"""`l2v-search serve` end to end: a real server process over a tiny model and two real indexes, over HTTP."""

import base64
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from llm2vec_search.errors import L2VError
from llm2vec_search.indexing import Index
from llm2vec_search.indexing.options import SearchOptions
from llm2vec_search.indexing.search import HIT_FIELDS
from tests.conftest import (
    ROOT,
    SERVED_NOTES,
    SERVER_KEY,
    Served,
    free_port,
    run_cli,
    save_tiny_model,
    write_files,
)


def post(served: Served, path: str, body: dict) -> httpx.Response:
    return httpx.post(served.url + path, json=body, headers=served.headers, timeout=30)


def test_health_is_public_and_two_indexes_share_one_model(served):
    health = httpx.get(f"{served.url}/health").json()
    assert health["status"] == "ok"
    assert len(health["models"]) == 1 and health["models"][0]["enabled"] is True
    assert "model" not in health["models"][0]  # its name may be a path of this machine: that needs a key


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/indexes"),
        ("POST", "/search"),
        ("POST", "/v1/embeddings"),
        ("POST", "/reload"),
        ("GET", "/openapi.json"),
    ],
)
@pytest.mark.parametrize("auth", [None, "Bearer wrong-key", SERVER_KEY])
def test_everything_else_needs_the_key(served, method, path, auth):
    headers = {"Authorization": auth} if auth else {}
    response = httpx.request(
        method, served.url + path, json={"query": "cat", "input": "cat"}, headers=headers
    )
    assert response.status_code == 401
    assert "API key" in response.json()["error"]["message"]


def test_indexes_describe_what_is_served(served):
    listed = {
        row["name"]: row
        for row in httpx.get(f"{served.url}/indexes", headers=served.headers).json()["indexes"]
    }
    assert list(listed) == ["notes", "extra"]
    assert listed["notes"]["files"] == 3 and listed["notes"]["chunks"] >= 3
    assert listed["notes"]["dim"] == 32 and listed["notes"]["size"] > 0
    assert listed["notes"]["model"] == str(served.model_dir.resolve())
    assert httpx.post(f"{served.url}/reload", headers=served.headers).json()["indexes"][0]["name"] == "notes"
    models = httpx.get(f"{served.url}/v1/models", headers=served.headers).json()["data"]
    assert [model["id"] for model in models] == ["notes", "extra"]
    spec = httpx.get(f"{served.url}/openapi.json", headers=served.headers).json()
    assert {"/search", "/v1/embeddings", "/health", "/indexes", "/reload"} <= set(spec["paths"])


def test_search_matches_the_library_in_every_mode(served):
    with Index.open("notes", root=served.index_dir) as index:
        for mode in ("bm25", "dense", "hybrid"):
            answer = post(
                served, "/search", {"query": "proteins fold into structures", "k": 3, "mode": mode}
            ).json()
            assert answer["index"] == "notes" and answer["mode"] == mode and answer["took_ms"] >= 0
            expected = index.search("proteins fold into structures", SearchOptions(k=3, mode=mode))
            assert [hit["chunk_id"] for hit in answer["hits"]] == [hit.chunk_id for hit in expected]
            assert [hit["score"] for hit in answer["hits"]] == pytest.approx(
                [hit.score for hit in expected], abs=1e-5
            )
            assert answer["hits"][0]["text"] == expected[0].text
    assert answer["hits"][0]["path"].endswith("proteins.md")


def test_search_takes_every_search_option_and_returns_the_librarys_hit_fields(served):
    """POST /search's body is generated from SearchOptions: dense_weight reaches hybrid fusion, and every
    hit has exactly the fields the CLI's JSON has."""
    query = {"query": "proteins fold into structures", "k": 4, "mode": "hybrid", "dense_weight": 3.0}
    answer = post(served, "/search", query).json()
    with Index.open("notes", root=served.index_dir) as index:
        expected = index.search(query["query"], SearchOptions(k=4, mode="hybrid", dense_weight=3.0))
        default_weight = index.search(query["query"], SearchOptions(k=4, mode="hybrid"))
    assert [hit["score"] for hit in answer["hits"]] == pytest.approx([h.score for h in expected], abs=1e-5)
    assert [h.score for h in expected] != pytest.approx([h.score for h in default_weight], abs=1e-3)
    assert all(list(hit) == list(HIT_FIELDS) for hit in answer["hits"])
    too_heavy = post(served, "/search", {**query, "dense_weight": 101})
    assert too_heavy.status_code in (400, 422) and "Traceback" not in too_heavy.text
    assert too_heavy.json()["error"]["message"].startswith("dense_weight:")
    spec = httpx.get(f"{served.url}/openapi.json", headers=served.headers).json()
    body = spec["components"]["schemas"]["SearchRequest"]["properties"]
    assert set(body) == {"query", "k", "mode", "path_glob", "dense_weight", "index"}
    assert body["dense_weight"]["maximum"] == 100 and body["k"]["maximum"] == 100  # the server's cap on k


def test_search_picks_the_index_and_filters_paths(served):
    extra = post(served, "/search", {"query": "vector search", "index": "extra", "mode": "bm25"}).json()
    assert extra["index"] == "extra" and extra["hits"][0]["path"].endswith("search.txt")
    cats = post(served, "/search", {"query": "the", "path_glob": "*cats.md", "mode": "hybrid"}).json()
    assert cats["hits"] and all(hit["path"].endswith("cats.md") for hit in cats["hits"])


def test_embeddings_are_the_encoders_vectors(served):
    from llm2vec_search.encoder import Encoder

    texts = ["The cat sat on the mat.", "Stock markets fell."]
    answer = post(served, "/v1/embeddings", {"input": texts, "model": "notes"}).json()
    assert answer["object"] == "list" and answer["model"] == "notes"
    assert [row["index"] for row in answer["data"]] == [0, 1]
    expected = Encoder.from_pretrained(served.model_dir).encode(texts)
    np.testing.assert_allclose([row["embedding"] for row in answer["data"]], expected, atol=1e-5)
    assert answer["usage"]["prompt_tokens"] == answer["usage"]["total_tokens"] > len(texts)
    packed = post(served, "/v1/embeddings", {"input": texts[0], "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, expected[0], atol=1e-5)


def test_openai_client_works_against_the_server(served):
    import openai

    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key=SERVER_KEY)
    result = client.embeddings.create(input=["proteins fold", "a dog runs"], model="notes")
    assert len(result.data) == 2 and len(result.data[0].embedding) == 32
    assert result.model == "notes" and result.usage.total_tokens > 0
    floats = post(served, "/v1/embeddings", {"input": ["proteins fold"]}).json()["data"][0]["embedding"]
    np.testing.assert_allclose(result.data[0].embedding, floats, atol=1e-6)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{served.url}/v1", api_key="wrong", max_retries=0).embeddings.create(
            input="x", model="notes"
        )


def test_wrong_method_and_server_survive_bad_input(served):
    assert httpx.get(f"{served.url}/search", headers=served.headers).status_code == 405
    assert post(served, "/search", {"query": "cat", "k": 1}).status_code == 200


def test_concurrent_requests_share_forward_passes(served):
    texts = [f"request {i}: proteins fold and cats sit" for i in range(24)]
    with ThreadPoolExecutor(24) as pool:
        embedded = list(pool.map(lambda text: post(served, "/v1/embeddings", {"input": text}), texts))
        searched = list(pool.map(lambda text: post(served, "/search", {"query": text, "k": 2}), texts))
    assert all(response.status_code == 200 for response in embedded + searched)
    alone = post(served, "/v1/embeddings", {"input": texts[5]}).json()["data"][0]["embedding"]
    np.testing.assert_allclose(embedded[5].json()["data"][0]["embedding"], alone, atol=1e-5)
    together = searched[7].json()["hits"]
    apart = post(served, "/search", {"query": texts[7], "k": 2}).json()["hits"]
    assert [hit["chunk_id"] for hit in together] == [hit["chunk_id"] for hit in apart]
    assert [hit["dense_score"] for hit in together] == pytest.approx(
        [hit["dense_score"] for hit in apart], abs=1e-5
    )
    stats = httpx.get(f"{served.url}/health").json()["models"][0]
    assert stats["largest_batch_requests"] > 1
    assert stats["batches"] < stats["requests"]


def test_rag_client_example_builds_a_cited_prompt(served):
    example = [
        sys.executable,
        str(ROOT / "examples" / "rag_client.py"),
        "proteins fold",
        "--url",
        served.url,
        "--mode",
        "bm25",
        "--k",
        "2",
    ]
    done = subprocess.run(
        example,
        env={**served.env, "L2V_SEARCH_API_KEY": SERVER_KEY},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert (
        "[1] " in done.stdout and "proteins.md:" in done.stdout and "Question: proteins fold" in done.stdout
    )
    refused = subprocess.run(example, env=served.env, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "401" in refused.stderr


def test_server_picks_up_another_processs_index_run(served):
    query = {"query": "quokkazebra", "index": "extra", "mode": "bm25"}
    assert post(served, "/search", query).json()["hits"] == []
    write_files(served.extra_dir, {"new.md": "# New\n\nA quokkazebra is not a real animal.\n"})
    args = ["index", str(served.extra_dir), "--name", "extra", "--index-dir", str(served.index_dir)]
    done = run_cli(*args, "--model", str(served.model_dir), env=served.env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    hits = post(served, "/search", query).json()["hits"]
    assert hits and hits[0]["path"].endswith("new.md")
    dense = post(served, "/search", {**query, "mode": "dense", "k": 10}).json()["hits"]
    assert any(hit["path"].endswith("new.md") for hit in dense)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0"], "--api-key"),
        (["--api-key", "UNSET_L2V_TEST_VAR"], "no environment variable"),
        (["--name", "missing"], "no index named 'missing'"),
    ],
)
def test_serve_refuses_bad_settings_in_one_line(served, args, message):
    done = run_cli(
        "serve",
        "--index-dir",
        str(served.index_dir),
        "--port",
        str(free_port()),
        *args,
        env=served.env,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_serve_refuses_a_port_in_use(served):
    done = run_cli(
        "serve", "--index-dir", str(served.index_dir), "--port", str(served.port), env=served.env, cwd=ROOT
    )
    assert done.returncode == 2 and "already in use" in done.stderr


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "10.0.0.1"])
def test_a_loopback_server_refuses_other_host_names(served, host):
    response = httpx.get(f"{served.url}/health", headers={"Host": host})
    assert response.status_code == 400 and "is not this machine" in response.json()["error"]["message"]
    assert httpx.get(f"{served.url}/health", headers={"Host": f"localhost:{served.port}"}).status_code == 200


def test_security_helpers(monkeypatch):
    from llm2vec_search.server.security import host_name, is_loopback, resolve_api_key

    assert [host_name(h) for h in ("[::1]:8765", "LocalHost:80", "127.0.0.1", "::1")] == [
        "::1",
        "localhost",
        "127.0.0.1",
        "::1",
    ]
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("myhost")
    monkeypatch.setenv("MY_L2V_KEY", "s3cret")
    assert resolve_api_key("MY_L2V_KEY") == "s3cret"
    assert resolve_api_key("a-literal-key") == "a-literal-key"
    assert resolve_api_key(None) is None
    with pytest.raises(L2VError, match="no environment variable"):
        resolve_api_key("MISSING_L2V_KEY")


def test_backend_loads_each_model_once_and_follows_a_rebuild_with_another_model(tmp_path):
    import shutil

    from llm2vec_search.server import Backend, BatchSettings

    first = save_tiny_model(tmp_path / "first")
    second = shutil.copytree(first, tmp_path / "second")  # same weights, other path: another fingerprint
    docs = write_files(tmp_path / "docs", SERVED_NOTES)
    for name, model in (("a", first), ("b", first), ("c", second)):
        with Index.open(name, root=tmp_path, model=str(model), create=True) as index:
            index.update([docs])
    with pytest.raises(L2VError, match="two indexes are named 'a'"):
        Backend.load(["a", str(tmp_path / "a")], tmp_path, BatchSettings())
    backend = Backend.load(["a", "b", str(tmp_path / "c")], tmp_path, BatchSettings())
    try:
        assert list(backend.indexes) == ["a", "b", "c"]
        assert len(backend.models) == 2
        assert backend.index("a").model is backend.index("b").model is not backend.index("c").model
        with Index.open("a", root=tmp_path, model=str(second), rebuild=True) as index:
            index.update([docs])
        served = backend.index("a")
        assert served.model is backend.index("c").model and len(backend.models) == 2
        vector = served.model.batcher.encode(["proteins fold"]).vectors[0]
        hits = served.search("proteins fold", served.model, vector, SearchOptions(k=3, mode="dense"))
        assert len(hits) == 3 and hits[0].dense_score is not None
    finally:
        backend.close()


def test_no_request_caused_an_internal_error(served):
    log = served.log.read_text()
    assert "Traceback" not in log and "internal error" not in log

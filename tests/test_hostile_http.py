"""Hostile HTTP requests, one table row each, against a real `l2v-search serve` on 127.0.0.1 (the fixture of
conftest.py): each gets its status with an OpenAI-shaped JSON error, and none a 5xx."""

import json
import re
import socket
import time

import httpx
import pytest

from tests.conftest import SERVER_KEY

LONE_SURROGATE = b'"a\\ud800b"'  # JSON can carry it; no encoder can read it
KEYED = {"Authorization": f"Bearer {SERVER_KEY}"}

HTTP_CASES = {
    "search-not-json": ("/search", b"{not json", 422),
    "search-query-number": ("/search", {"query": 5}, 422),
    "search-query-empty": ("/search", {"query": ""}, 422),
    "search-query-blank": ("/search", {"query": "   "}, 400),
    "search-query-lone-surrogate": ("/search", b'{"query": ' + LONE_SURROGATE + b"}", 422),
    "search-k-zero": ("/search", {"query": "cat", "k": 0}, 422),
    "search-k-above-limit": ("/search", {"query": "cat", "k": 5000}, 422),  # the cap is in the schema
    "search-dense-weight-negative": ("/search", {"query": "cat", "dense_weight": -1}, 422),
    "search-mode-unknown": ("/search", {"query": "cat", "mode": "fuzzy"}, 422),
    "search-index-unknown": ("/search", {"query": "cat", "index": "missing"}, 404),
    "search-index-path": ("/search", {"query": "cat", "index": "../notes"}, 404),
    "search-path-field": ("/search", {"query": "cat", "path": "/etc/passwd"}, 422),
    "search-body-list": ("/search", [1, 2], 422),
    "embeddings-empty-list": ("/v1/embeddings", {"input": []}, 400),
    "embeddings-empty-text": ("/v1/embeddings", {"input": ""}, 400),
    "embeddings-blank-item": ("/v1/embeddings", {"input": ["ok", " "]}, 400),
    "embeddings-token-arrays": ("/v1/embeddings", {"input": [[1, 2, 3]]}, 422),
    "embeddings-too-many": ("/v1/embeddings", {"input": ["x"] * 257}, 400),
    "embeddings-too-long": ("/v1/embeddings", {"input": "x" * 40_000}, 400),
    "embeddings-lone-surrogate": ("/v1/embeddings", b'{"input": ' + LONE_SURROGATE + b"}", 400),
    "embeddings-lone-surrogate-in-list": (
        "/v1/embeddings",
        b'{"input": ["ok", ' + LONE_SURROGATE + b"]}",
        400,
    ),
    "embeddings-unknown-model": ("/v1/embeddings", {"input": "x", "model": "text-embedding-3-small"}, 404),
    "embeddings-dimensions": ("/v1/embeddings", {"input": "x", "dimensions": 7}, 400),
    "embeddings-format-unknown": ("/v1/embeddings", {"input": "x", "encoding_format": "hex"}, 422),
    "embeddings-body-too-large": ("/v1/embeddings", {"input": "x" * 1_100_000}, 413),
    "no-such-path": ("/nowhere", {}, 404),
}


@pytest.mark.parametrize("path, body, status", HTTP_CASES.values(), ids=HTTP_CASES.keys())
def test_hostile_request_gets_a_json_4xx(served, path, body, status):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {**KEYED, "Content-Type": "application/json"}
    response = httpx.post(served.url + path, content=content, headers=headers, timeout=30)
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"]


def test_unknown_model_is_openais_model_not_found(served):
    import openai

    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key=SERVER_KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError) as raised:
        client.embeddings.create(input="x", model="text-embedding-3-small")
    assert raised.value.code == "model_not_found"
    served_ids = [model.id for model in client.models.list()]
    assert client.embeddings.create(input="x", model=served_ids[0]).model == served_ids[0]


AUTH_CASES = {
    "scheme-lower-case": ("bearer " + SERVER_KEY, 200),
    "scheme-upper-case": ("BEARER " + SERVER_KEY, 200),
    "key-in-other-case": ("Bearer " + SERVER_KEY.upper(), 401),
    "basic-scheme": ("Basic " + SERVER_KEY, 401),
    "key-without-scheme": (SERVER_KEY, 401),
}


@pytest.mark.parametrize("authorization, status", AUTH_CASES.values(), ids=AUTH_CASES.keys())
def test_auth_scheme_is_case_insensitive_and_the_key_is_not(served, authorization, status):
    response = httpx.get(f"{served.url}/v1/models", headers={"Authorization": authorization}, timeout=30)
    assert response.status_code == status, response.text


def test_no_hostile_request_caused_an_internal_error(served):
    log = served.log.read_text()
    assert "Traceback" not in log and "internal error" not in log


def read_response(sock: socket.socket) -> bytes:
    """One HTTP/1.1 response with a Content-Length body, or b"" when the server has closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        if not part:
            return data
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    return data


def test_an_idle_connection_outlives_the_clients_own_keep_alive(served):
    """httpx (and the OpenAI client) drop an idle pooled connection after 5 s; a server that closes at the
    same moment races them, and a request sent on the closing connection fails. The server waits longer."""
    url = httpx.URL(served.url)
    request = (
        f"GET /health HTTP/1.1\r\nHost: {url.host}\r\nAuthorization: Bearer {SERVER_KEY}\r\n\r\n".encode()
    )
    with socket.create_connection((url.host, url.port), timeout=30) as sock:
        sock.sendall(request)
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        time.sleep(6)
        sock.sendall(request)
        assert read_response(sock).startswith(b"HTTP/1.1 200")

"""The torch-free query path (issue 23): a query entry built from a loaded encoder gives that encoder's query
vectors (float32 graph exactly, int8 graph closely), its SentencePiece tokenizer gives the original's ids, an
index searches with it once `index` has built it, and a one-shot search then never imports torch."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, TRAINING_TEXT, build_gemma_style_tokenizer, build_tokenizer, tiny_config
from transformers import AutoModel

from llm2vec_search.encoder import Encoder, set_bidirectional
from llm2vec_search.encoder.onnx_export import TOKENIZER_CHECKS, build_query_model
from llm2vec_search.encoder.onnx_query import (
    GRAPHS,
    MIN_COSINE,
    QUERY_FORMAT,
    QUERY_MARKER,
    QueryEncoder,
    QueryTokenizer,
    describe_query_path,
    find_query_encoder,
    query_model_usable,
)
from llm2vec_search.indexing import Index

QUERIES = ["the cat and the dog", "Proteins fold", "a <custom> query about ÜNÏCODE 🙂", "x " * 40]


def windowed_encoder(pooling: str = "mean", head: bool = False, gemma_tokens: bool = True) -> Encoder:
    """A tiny bidirectional Gemma 3 whose sliding window covers its whole 64-token input, with an
    instruction and, if asked, a head to 16 dimensions."""
    tokenizer = build_gemma_style_tokenizer() if gemma_tokens else build_tokenizer()
    config = tiny_config("gemma3_text", len(tokenizer))
    config.sliding_window = 64
    torch.manual_seed(0)
    model = AutoModel.from_config(config).eval()
    set_bidirectional(model)
    projection = torch.nn.Linear(32, 16) if head else None
    return Encoder(
        model,
        tokenizer,
        pooling=pooling,
        max_length=64,
        query_instruction="Find passages",
        name="tiny-windowed",
        fingerprint=f"tiny-windowed-{pooling}-{head}-{gemma_tokens}",
        head=projection,
        query_cache_size=0,
    )


def manifest(entry) -> dict:
    return json.loads((entry / QUERY_MARKER).read_text())


@pytest.mark.parametrize("pooling", ["mean", "last_token"])
def test_both_graphs_give_the_encoders_query_vectors(pooling):
    encoder = windowed_encoder(pooling, head=True)
    entry = build_query_model(encoder, keep_all=True)
    info = manifest(entry)
    expected = encoder.encode_queries(QUERIES)
    for weights, graph in GRAPHS.items():
        vectors = QueryEncoder(entry, info, graph, query_cache_size=0).encode_queries(QUERIES)
        assert vectors.shape == (len(QUERIES), 16)
        cosines = (vectors * expected).sum(axis=1)
        assert cosines.min() > (0.99999 if weights == "float32" else 0.99), weights
        assert info["checks"][weights]["min_cosine"] > 0.99
    assert info["tokenizer"] == "sentencepiece"
    assert set(info["checks"]) == {"torch", *GRAPHS}


def test_sentencepiece_form_tokenizes_as_the_original():
    encoder = windowed_encoder()
    entry = build_query_model(encoder)
    fast = QueryTokenizer(entry, manifest(entry))
    texts = [*TRAINING_TEXT[:7], *TOKENIZER_CHECKS, *QUERIES, "spelled out: <unk> and <custom>"]
    backend = encoder.tokenizer.backend_tokenizer
    assert fast.ids(texts) == [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]


def test_a_tokenizer_of_another_shape_is_kept_as_it_is():
    entry = build_query_model(windowed_encoder(gemma_tokens=False), keep_all=True)
    info = manifest(entry)
    assert info["tokenizer"] == "tokenizers"
    assert not (entry / "tokenizer.model").exists()
    vectors = QueryEncoder(entry, info, GRAPHS["float32"]).encode_queries(QUERIES)
    assert np.isfinite(vectors).all()


def test_only_the_chosen_graph_is_kept_and_found_only_if_faster():
    encoder = windowed_encoder()
    entry = build_query_model(encoder)
    info = manifest(entry)
    kept = {path.name for path in entry.glob("*.onnx")}
    if info["graph"] is None:
        assert kept == set()
        assert find_query_encoder(encoder.fingerprint, encoder.max_length) is None
    else:
        assert kept == {info["graph"]}
        found = find_query_encoder(encoder.fingerprint, encoder.max_length)
        assert isinstance(found, QueryEncoder)
        weights = next(name for name, graph in GRAPHS.items() if graph == info["graph"])
        assert info["checks"][weights]["min_cosine"] >= MIN_COSINE


def test_models_the_graph_cannot_copy_get_no_entry():
    assert query_model_usable(windowed_encoder())
    narrow = windowed_encoder()
    narrow.max_length = 128  # longer than the 64-token sliding window: padding-only masks would be wrong
    assert not query_model_usable(narrow)
    assert build_query_model(narrow) is None
    causal = windowed_encoder()
    set_bidirectional(causal.model, False)
    assert not query_model_usable(causal)


def test_repeated_queries_come_from_memory():
    encoder = windowed_encoder()
    entry = build_query_model(encoder, keep_all=True)
    query_encoder = QueryEncoder(entry, manifest(entry), GRAPHS["float32"])
    first = query_encoder.encode_queries(QUERIES[:2])
    query_encoder.session = None  # would fail if the model ran again
    assert np.array_equal(query_encoder.encode_queries(QUERIES[1::-1]), first[::-1])


def test_an_index_searches_with_the_query_model(tmp_path):
    encoder = windowed_encoder()
    docs = tmp_path / "docs"
    docs.mkdir()
    for i, text in enumerate(TRAINING_TEXT[:7]):
        (docs / f"{i}.txt").write_text(text)
    with Index.open("t", root=tmp_path / "idx", model=encoder, create=True, chunk_tokens=32) as index:
        index.update([docs])
        assert index.query_encoder is encoder  # nothing built yet
        entry = index.prepare_query_model()
        assert entry is not None
        assert index.prepare_query_model() == entry  # built once
        reference = [hit.path for hit in index.search("the dog in the park")]
    # whichever graph was faster here, use the float32 one, as a machine where it was faster would
    build_query_model(encoder, keep_all=True, replace=True)
    info = manifest(entry)
    info["graph"] = GRAPHS["float32"]
    (entry / QUERY_MARKER).write_text(json.dumps(info))
    with Index.open("t", root=tmp_path / "idx", model=encoder) as index:
        assert isinstance(index.query_encoder, QueryEncoder)
        assert [hit.path for hit in index.search("the dog in the park")] == reference
    with Index.open("t", root=tmp_path / "idx", model=encoder, onnx_queries=False) as index:
        assert index.query_encoder is encoder
    with Index.open("t", root=tmp_path / "idx", model=encoder, dtype="float32") as index:
        assert index.query_encoder is encoder  # a device or dtype asked for runs the full model there


def test_query_path_imports_no_torch():
    code = (
        "import sys; import llm2vec_search.encoder.onnx_query, llm2vec_search.indexing, llm2vec_search.cli; "
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "False"


def test_doctor_says_how_queries_are_embedded():
    encoder = windowed_encoder()
    assert "no query model built yet" in describe_query_path(encoder.fingerprint, encoder.max_length)
    entry = build_query_model(encoder)
    said = describe_query_path(encoder.fingerprint, encoder.max_length)
    if manifest(entry)["graph"]:
        assert said.startswith("query model, ") and "ms a query; PyTorch" in said
    else:
        assert said.startswith("full model (its query model was not faster here")


def test_onnx_runtime_telemetry_stays_off(tmp_path):
    """ONNX Runtime's Linux builds report usage and keep a device identifier under ~/.cache/Microsoft unless
    told not to; a search through the query model must leave nothing there (and send nothing)."""
    encoder = windowed_encoder()
    entry = build_query_model(encoder, keep_all=True)
    home = tmp_path / "home"
    home.mkdir()
    code = (
        "import json, sys; from pathlib import Path\n"
        "from llm2vec_search.encoder.onnx_query import QUERY_MARKER, QueryEncoder\n"
        f"entry = Path({str(entry)!r})\n"
        "manifest = json.loads((entry / QUERY_MARKER).read_text())\n"
        f"QueryEncoder(entry, manifest, {GRAPHS['float32']!r}).encode_queries(['the cat'])\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "ORT_DISABLE_TELEMETRY"}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True)
    assert not list(home.rglob("*")), [str(path) for path in home.rglob("*")]


def test_a_server_embeds_searches_with_the_query_model():
    """`serve` and `mcp` batch search queries through the query model where there is one; the full model
    keeps embedding everything else (/v1/embeddings)."""
    import asyncio

    from llm2vec_search.server.backend import Backend, BatchSettings

    encoder = windowed_encoder()
    entry = build_query_model(encoder, keep_all=True)
    info = manifest(entry)
    info["graph"] = GRAPHS["float32"]  # as if it had been the faster one here
    (entry / QUERY_MARKER).write_text(json.dumps(info))
    expected = QueryEncoder(entry, info, GRAPHS["float32"]).encode_queries(["the cat"])[0]
    for onnx_queries, batched in ((True, "query model"), (False, "full model")):
        backend = Backend(BatchSettings(), onnx_queries=onnx_queries)
        try:
            model = backend._model_for(encoder)
            assert model.describe()["queries"] == batched
            vector = asyncio.run(model.embed_query("the cat"))
            assert float(vector @ expected) > 0.99999
        finally:
            backend.close()


def test_an_entry_of_an_older_format_is_built_again():
    encoder = windowed_encoder()
    entry = build_query_model(encoder)
    stale = manifest(entry)
    stale["format"] = 0
    (entry / QUERY_MARKER).write_text(json.dumps(stale))
    assert find_query_encoder(encoder.fingerprint, encoder.max_length) is None
    said = []
    assert build_query_model(encoder, announce=lambda: said.append("building")) == entry
    assert said == ["building"]
    assert manifest(entry)["format"] == QUERY_FORMAT
    assert build_query_model(encoder, announce=lambda: said.append("again")) == entry
    assert said == ["building"]  # a current entry is not built twice

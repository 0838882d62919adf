"""Models made by the official llm2vec library, loaded by hub name or folder, give the library's own vectors.

tests/data/llm2vec holds a fake Hugging Face cache with tiny random models laid out like the published ones
(base under the real base's name; MNTP folder with config.json, tokenizer and adapter but no weights; an
adapter-only supervised folder) and the vectors llm2vec 0.2.3 gave for them
(scripts/make_llm2vec_reference.py).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from llm2vec_search.encoder import Encoder
from llm2vec_search.encoder.adapters import MODEL_FORMAT, ModelDirConfig
from llm2vec_search.encoder.encoder import model_fingerprint
from llm2vec_search.encoder.published import RETRIEVAL_INSTRUCTION, cached_models, hub_snapshot
from llm2vec_search.errors import L2VError

DATA = Path(__file__).parent / "data" / "llm2vec"
REFERENCE = json.loads((DATA / "reference.json").read_text())
SUPERVISED = [
    "McGill-NLP/LLM2Vec-Sheared-LLaMA-mntp-supervised",  # plain base; llm2vec_config.json: 16 tokens
    "McGill-NLP/LLM2Vec-Meta-Llama-3-8B-Instruct-mntp-supervised",  # Llama-3 chat wrapping
    "McGill-NLP/LLM2Vec-Mistral-7B-Instruct-v2-mntp-supervised",  # [INST] wrapping
]
LLAMA3 = SUPERVISED[1]
MIN_COSINE = 0.9999


@pytest.fixture(autouse=True)
def hub(monkeypatch) -> Path:
    monkeypatch.setenv("HF_HUB_CACHE", str(DATA / "hub"))
    return DATA / "hub"


def reference(name: str, kind: str) -> np.ndarray:
    vectors = np.array(REFERENCE["models"][name][kind], dtype=np.float64)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def cosines(ours, theirs: np.ndarray) -> np.ndarray:
    ours = np.asarray(ours, dtype=np.float64)
    return (ours / np.linalg.norm(ours, axis=1, keepdims=True) * theirs).sum(1)


def run_cli(*args: str, env_cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "L2V_SEARCH_CACHE_DIR": str(env_cache)}  # HF_HUB_CACHE as the test set it
    return subprocess.run(
        [sys.executable, "-m", "llm2vec_search", *args], capture_output=True, text=True, timeout=180, env=env
    )


def test_the_reference_sets_the_instruction_the_models_expect():
    assert REFERENCE["instruction"] == RETRIEVAL_INSTRUCTION
    assert REFERENCE["made_with"] == {"llm2vec": "0.2.3", "transformers": "4.44.2", "peft": "0.12.0"}


@pytest.mark.parametrize("name", sorted(REFERENCE["models"]))
def test_library_vectors_match_llm2vec(name):
    encoder = Encoder.from_pretrained(name)
    documents = encoder.encode(REFERENCE["documents"])
    queries = encoder.encode(REFERENCE["queries"], instruction=REFERENCE["instruction"])
    assert cosines(documents, reference(name, "documents")).min() >= MIN_COSINE
    assert cosines(queries, reference(name, "queries")).min() >= MIN_COSINE


@pytest.mark.parametrize("name", SUPERVISED)
def test_cli_embed_json_matches_llm2vec(name, tmp_path):
    result = run_cli(
        "embed",
        *REFERENCE["queries"],
        "--model",
        name,
        "--instruction",
        REFERENCE["instruction"],
        "--json",
        env_cache=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    vectors = [row["embedding"] for row in json.loads(result.stdout)["data"]]
    assert cosines(vectors, reference(name, "queries")).min() >= MIN_COSINE


def test_cli_embed_documents_match_llm2vec(tmp_path):
    result = run_cli("embed", *REFERENCE["documents"], "--model", LLAMA3, "--json", env_cache=tmp_path)
    assert result.returncode == 0, result.stderr
    vectors = [row["embedding"] for row in json.loads(result.stdout)["data"]]
    assert cosines(vectors, reference(LLAMA3, "documents")).min() >= MIN_COSINE


def test_index_and_query_score_as_llm2vec(tmp_path):
    """`query` embeds with the instruction the published models expect; scores are llm2vec's cosines."""
    docs = tmp_path / "docs"
    docs.mkdir()
    texts = [REFERENCE["documents"][0], REFERENCE["documents"][2]]
    for i, text in enumerate(texts):
        (docs / f"doc{i}.txt").write_text(text)
    cache, index_dir = tmp_path / "cache", tmp_path / "indexes"
    common = ("--index-dir", str(index_dir), "--name", "pub")
    built = run_cli("index", str(docs), "--model", LLAMA3, *common, env_cache=cache)
    assert built.returncode == 0, built.stderr
    query = REFERENCE["queries"][1]
    found = run_cli("query", query, "--mode", "dense", "--json", *common, env_cache=cache)
    assert found.returncode == 0, found.stderr
    hits = {Path(hit["path"]).name: hit["score"] for hit in json.loads(found.stdout)["hits"]}
    expected = reference(LLAMA3, "documents")[[0, 2]] @ reference(LLAMA3, "queries")[1]
    assert hits["doc0.txt"] == pytest.approx(expected[0], abs=1e-4)
    assert hits["doc1.txt"] == pytest.approx(expected[1], abs=1e-4)


def test_a_folder_and_a_description_load_the_same_model(tmp_path):
    """The supervised folder by path, and an l2v-model.json naming the base and both adapter folders (a
    download kept outside the cache), give the hub name's vectors and fingerprint."""
    supervised = hub_snapshot(LLAMA3)
    mntp = hub_snapshot(LLAMA3.removesuffix("-supervised"))
    base = hub_snapshot("meta-llama/Meta-Llama-3-8B-Instruct")
    described = tmp_path / "described"
    ModelDirConfig(
        base_model=str(base),
        adapters=[str(mntp), str(supervised)],
        text_format="llm2vec",
        base_name="meta-llama/Meta-Llama-3-8B-Instruct",
        query_instruction=RETRIEVAL_INSTRUCTION,
    ).save(described)
    assert json.loads((described / "l2v-model.json").read_text())["format"] == MODEL_FORMAT == 3
    expected = reference(LLAMA3, "queries")
    for spec in (str(supervised), str(described)):
        encoder = Encoder.from_pretrained(spec)
        assert encoder.fingerprint == model_fingerprint(LLAMA3)
        assert cosines(encoder.encode_queries(REFERENCE["queries"]), expected).min() >= MIN_COSINE


def test_our_text_format_is_another_model(tmp_path):
    """The same weights with our own text handling give other query vectors, and another fingerprint, so an
    index built with one format refuses the other."""
    described = tmp_path / "ours"
    ModelDirConfig(
        base_model=str(hub_snapshot("meta-llama/Meta-Llama-3-8B-Instruct")),
        adapters=[str(hub_snapshot(LLAMA3.removesuffix("-supervised"))), str(hub_snapshot(LLAMA3))],
    ).save(described)
    ours = Encoder.from_pretrained(described)
    assert ours.fingerprint != model_fingerprint(LLAMA3)
    queries = ours.encode(REFERENCE["queries"], instruction=REFERENCE["instruction"])
    assert cosines(queries, reference(LLAMA3, "queries")).min() < 0.999


def test_an_unknown_text_format_is_refused(tmp_path):
    (tmp_path / "l2v-model.json").write_text(json.dumps({"base_model": "x", "text_format": "sbert"}))
    with pytest.raises(L2VError, match="text_format 'sbert'"):
        Encoder.from_pretrained(tmp_path)


def copy_hub(tmp_path: Path, monkeypatch) -> Path:
    copy = tmp_path / "hub"
    shutil.copytree(DATA / "hub", copy)
    monkeypatch.setenv("HF_HUB_CACHE", str(copy))
    return copy


def test_a_missing_base_is_one_line_naming_it(tmp_path, monkeypatch):
    hub = copy_hub(tmp_path, monkeypatch)
    shutil.rmtree(hub / "models--meta-llama--Meta-Llama-3-8B-Instruct")
    with pytest.raises(L2VError) as error:
        Encoder.from_pretrained(LLAMA3)
    message = str(error.value)
    assert "'meta-llama/Meta-Llama-3-8B-Instruct'" in message and "\n" not in message
    assert "adapter_config.json" in message  # where the name came from
    row = next(row for row in cached_models() if row.name == LLAMA3)
    assert not row.complete and "meta-llama/Meta-Llama-3-8B-Instruct" in row.detail

    result = run_cli("embed", "hello", "--model", LLAMA3, env_cache=tmp_path / "cache")
    assert result.returncode == 2
    assert "meta-llama/Meta-Llama-3-8B-Instruct" in result.stderr and "Traceback" not in result.stderr


def test_a_snapshot_missing_from_refs_main_is_named(tmp_path, monkeypatch):
    hub = copy_hub(tmp_path, monkeypatch)
    repo = hub / "models--McGill-NLP--LLM2Vec-Sheared-LLaMA-mntp"
    shutil.rmtree(repo / "snapshots")
    with pytest.raises(L2VError, match="'McGill-NLP/LLM2Vec-Sheared-LLaMA-mntp'"):
        Encoder.from_pretrained("McGill-NLP/LLM2Vec-Sheared-LLaMA-mntp-supervised")


def test_a_name_not_in_the_cache_says_where_it_looked():
    with pytest.raises(L2VError, match=r"McGill-NLP/LLM2Vec-Nothing.*Hugging Face cache"):
        Encoder.from_pretrained("McGill-NLP/LLM2Vec-Nothing")


def test_hf_home_is_where_the_cache_is_found(monkeypatch, tmp_path):
    shutil.copytree(DATA / "hub", tmp_path / "hub")
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert hub_snapshot(LLAMA3) is not None
    assert {row.name for row in cached_models()} >= set(SUPERVISED)


def test_models_lists_the_cached_llm2vec_models(tmp_path):
    result = run_cli("models", env_cache=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in SUPERVISED:  # whole, on a line of its own, whatever the terminal's width
        assert f"  {name}  (2 adapter(s) on " in result.stdout


def test_big_bases_load_and_merge_in_the_target_dtype():
    encoder = Encoder.from_pretrained(LLAMA3, dtype="bfloat16")
    assert {p.dtype for p in encoder.model.parameters()} == {torch.bfloat16}
    queries = encoder.encode(REFERENCE["queries"], instruction=REFERENCE["instruction"])
    assert cosines(queries, reference(LLAMA3, "queries")).min() >= 0.99


def test_long_texts_are_cut_by_words_as_llm2vec_cuts_them():
    """The Sheared-LLaMA style model's llm2vec_config.json sets doc_max_length 16: the long document is cut
    (its vector matches llm2vec's above), and the note says so with that length."""
    encoder = Encoder.from_pretrained(SUPERVISED[0])
    encoder.encode(REFERENCE["documents"])
    assert encoder.text_tokens == 16
    assert encoder.last_stats.truncated == 1


def test_relative_folders_and_cache_paths_resolve_from_the_working_directory(tmp_path, monkeypatch):
    """A relative HF_HUB_CACHE and a description whose base_model is a relative chain folder load the model
    whole (the chain's folders are made absolute before the description's own are joined to its folder)."""
    shutil.copytree(DATA / "hub", tmp_path / "hub")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_CACHE", "hub")
    supervised = hub_snapshot(LLAMA3)
    assert supervised is not None and supervised.is_absolute()
    described = tmp_path / "described"
    relative = supervised.relative_to(tmp_path)
    ModelDirConfig(base_model=str(relative), text_format="llm2vec").save(described)
    encoder = Encoder.from_pretrained(described)
    assert cosines(encoder.encode(REFERENCE["documents"]), reference(LLAMA3, "documents")).min() >= MIN_COSINE


def test_ray_workers_rebuild_the_text_handling():
    """`index --ray` rebuilds the encoder on each worker from a payload: llm2vec's text handling goes too."""
    from llm2vec_search.indexing.ray_embed import encoder_from_payload, model_payload

    rebuilt = encoder_from_payload(model_payload(Encoder.from_pretrained(LLAMA3)), "cpu", "float32")
    vectors = rebuilt.encode(REFERENCE["documents"])
    assert cosines(vectors, reference(LLAMA3, "documents")).min() >= MIN_COSINE


def test_a_moved_cache_keeps_the_fingerprint(tmp_path, monkeypatch):
    """The base is known by hub name and revision, not by where the cache is: an index built before the
    cache moved (another HF_HOME) still matches its model."""
    before = model_fingerprint(LLAMA3)
    copy_hub(tmp_path, monkeypatch)
    assert model_fingerprint(LLAMA3) == before


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ('{"pooling_mode": "bos_token"}', "pooling_mode 'bos_token' is not supported"),
        ('{"max_length": "long"}', "cannot read"),
        ('["mean"]', "cannot read"),
        ('{"skip_instruction": false}', "skip_instruction false"),
    ],
)
def test_an_llm2vec_config_we_cannot_reproduce_is_refused(settings, message, tmp_path, monkeypatch):
    hub = copy_hub(tmp_path, monkeypatch)
    supervised = hub_snapshot(SUPERVISED[0])
    assert supervised is not None and supervised.is_relative_to(hub)
    (supervised / "llm2vec_config.json").write_text(settings)
    with pytest.raises(L2VError, match=message):
        Encoder.from_pretrained(SUPERVISED[0])

"""BEIR retrieval eval: the loader's checks, the real `Index` pipeline, and the CLI end to end."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli, tiny_encoder

from llm2vec_search.errors import L2VError
from llm2vec_search.evaluation.beir import load_beir
from llm2vec_search.evaluation.retrieval import build_eval_index, rank_documents, run_retrieval
from llm2vec_search.indexing.options import SearchOptions

CORPUS = [
    {
        "_id": "protein",
        "title": "Protein folding",
        "text": "Proteins fold into three dimensional structures.",
    },
    {"_id": "stocks", "title": "Markets", "text": "Stock markets fell sharply after the announcement."},
    {"_id": "cat", "title": "", "text": "The cat sat on the mat and looked at the dog."},
    {"_id": "park", "title": "Parks", "text": "A dog is running in the park with a ball. One zebra watched."},
    {"_id": "zebras", "title": "Zebras", "text": " ".join(f"Zebra number {i} grazes." for i in range(30))},
    {"_id": "blank", "title": "", "text": "   "},
]
QUERIES = [
    {"_id": "q1", "text": "how do proteins fold"},
    {"_id": "q2", "text": "why did the stock markets fall"},
    {"_id": "q3", "text": "cat on the mat"},
    {"_id": "q4", "text": "an unjudged question"},
]
QRELS = "query-id\tcorpus-id\tscore\nq1\tprotein\t1\nq2\tstocks\t1\nq3\tcat\t1\n"


def write_beir(folder: Path, corpus=CORPUS, queries=QUERIES, qrels: str = QRELS, split: str = "test") -> Path:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / f"{split}.tsv").write_text(qrels)
    return folder


@pytest.fixture
def beir_dir(tmp_path) -> Path:
    return write_beir(tmp_path / "tinybeir")


# loading
def test_load_joins_title_and_text_and_keeps_only_judged_queries(beir_dir):
    dataset = load_beir(beir_dir)
    assert dataset.name == "tinybeir" and dataset.split == "test"
    assert dataset.corpus["protein"] == "Protein folding\n\nProteins fold into three dimensional structures."
    assert dataset.corpus["cat"] == "The cat sat on the mat and looked at the dog."
    assert "blank" not in dataset.corpus  # nothing to embed
    assert list(dataset.queries) == ["q1", "q2", "q3"]
    assert dataset.qrels == {"q1": {"protein": 1}, "q2": {"stocks": 1}, "q3": {"cat": 1}}
    assert [doc.path for doc in dataset.documents()] == ["protein", "stocks", "cat", "park", "zebras"]


def test_corpus_hash_follows_the_corpus_file(beir_dir):
    before = load_beir(beir_dir).corpus_hash
    with (beir_dir / "corpus.jsonl").open("a") as handle:
        handle.write(json.dumps({"_id": "new", "title": "", "text": "more"}) + "\n")
    assert load_beir(beir_dir).corpus_hash != before


def _corrupt(folder: Path, name: str, text: str | bytes) -> None:
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "corpus.jsonl",
            '{"_id": "a", "text": "x"}\n{"_id": "b", "text": \n',
            "corpus.jsonl line 2: not valid JSON",
        ),
        (
            "corpus.jsonl",
            '{"_id": "a", "text": "x"}\n["no", "object"]\n',
            "corpus.jsonl line 2: expected a JSON",
        ),
        ("corpus.jsonl", '{"text": "no id"}\n', 'corpus.jsonl line 1: expected a JSON object with an "_id"'),
        (
            "corpus.jsonl",
            '{"_id": "a", "text": "x"}\n{"_id": "a", "text": "y"}\n',
            "line 2: duplicate _id 'a'",
        ),
        ("corpus.jsonl", '{"_id": "a", "text": 5}\n', 'corpus.jsonl line 1: "text" is not a string'),
        ("corpus.jsonl", b'{"_id": "a", "text": "x"}\n{"_id": "b", "text": "\xff"}\n', "line 2: not UTF-8"),
        ("queries.jsonl", '{"_id": "q1", "text": "ok"}\n{oops}\n', "queries.jsonl line 2: not valid JSON"),
        (
            "qrels/test.tsv",
            "query-id\tcorpus-id\tscore\nq1\tprotein\t1\nq9\tcat\t1\n",
            "line 3: query id 'q9'",
        ),
        ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\tnowhere\t1\n", "line 2: corpus id 'nowhere'"),
        ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\tprotein\n", "test.tsv line 2: expected query-id"),
        ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\tprotein\thigh\n", "test.tsv line 2: expected"),
        ("qrels/test.tsv", "query-id\tcorpus-id\tscore\n", "no relevant judgements"),
        ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\tprotein\t0\n", "no relevant judgements"),
    ],
)
def test_bad_files_are_named_with_their_line(beir_dir, name, content, message):
    _corrupt(beir_dir, name, content)
    with pytest.raises(L2VError, match=None) as error:
        load_beir(beir_dir)
    assert message in str(error.value)
    assert str(beir_dir / name) in str(error.value)


def test_a_judged_query_without_text_is_an_error(beir_dir):
    write_beir(beir_dir, queries=[{"_id": "q1", "text": ""}, *QUERIES[1:]])
    with pytest.raises(L2VError, match="query 'q1' has no text"):
        load_beir(beir_dir)


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        ("corpus.jsonl", "not a BEIR folder, corpus.jsonl is missing"),
        ("queries.jsonl", "queries.jsonl is missing"),
    ],
)
def test_missing_files_make_it_not_a_beir_folder(beir_dir, remove, message):
    (beir_dir / remove).unlink()
    with pytest.raises(L2VError, match=message):
        load_beir(beir_dir)


def test_unknown_split_lists_the_splits_there(beir_dir):
    write_beir(beir_dir, qrels="query-id\tcorpus-id\tscore\nq4\tpark\t1\n", split="train")
    with pytest.raises(L2VError, match=r"no qrels for split 'dev'; splits here: test, train"):
        load_beir(beir_dir, "dev")
    assert list(load_beir(beir_dir, "train").queries) == ["q4"]


def test_a_missing_folder_is_an_error(tmp_path):
    with pytest.raises(L2VError, match="not a folder"):
        load_beir(tmp_path / "nowhere")


# the pipeline, in process
def test_bm25_ranks_the_obvious_document_first(beir_dir):
    result = run_retrieval(
        load_beir(beir_dir), tiny_encoder(), SearchOptions(mode="bm25"), chunk_tokens=32, overlap_tokens=4
    )
    assert result.metrics == {"ndcg@10": 1.0, "recall@10": 1.0, "recall@100": 1.0, "mrr@10": 1.0}
    assert (result.queries, result.docs) == (3, 5)
    assert result.chunks > result.docs  # the zebra document needs several chunks
    assert result.chunks_embedded == 0  # BM25 never runs the model


def test_dense_index_is_cached_and_reused_by_another_mode(beir_dir):
    encoder = tiny_encoder()
    dataset = load_beir(beir_dir)
    first = run_retrieval(dataset, encoder, SearchOptions(mode="dense"), chunk_tokens=32, overlap_tokens=4)
    assert first.chunks_embedded == first.chunks > 0
    second = run_retrieval(dataset, encoder, SearchOptions(mode="hybrid"), chunk_tokens=32, overlap_tokens=4)
    assert second.index_path == first.index_path
    assert second.chunks_embedded == 0
    other_chunking = run_retrieval(
        dataset, encoder, SearchOptions(mode="dense"), chunk_tokens=48, overlap_tokens=4
    )
    assert other_chunking.index_path != first.index_path
    assert other_chunking.chunks_embedded == other_chunking.chunks


def test_documents_are_ranked_once_by_their_best_chunk_and_searched_deeper_when_short(beir_dir):
    dataset = load_beir(beir_dir)
    index, _ = build_eval_index(dataset, tiny_encoder(), chunk_tokens=16, overlap_tokens=0)
    with index:
        zebra_chunks = sum(
            1 for hit in index.search("zebra", SearchOptions(k=1000, mode="bm25")) if hit.path == "zebras"
        )
        assert zebra_chunks > 8  # more than the first pass asks for when depth is 2
        rankings = rank_documents(index, {"q": "zebra"}, SearchOptions(mode="bm25"), depth=2)
        assert rankings["q"] == ["zebras", "park"]
        dense = rank_documents(index, {"q": "zebra"}, SearchOptions(mode="dense"), depth=100)
        assert sorted(dense["q"]) == sorted(dataset.corpus)  # each document once


def test_hybrid_ranks_its_top_documents_as_a_users_search_does(tmp_path):
    """Evaluation searches deep (for Recall@100), and fusing deeper lists reorders hybrid's top; its top 10
    must still be what a search for 10 hits returns. 130 one-chunk documents: 60 hold "zebra" once to six
    times, so BM25 ranks more of them than a 50-deep list holds."""
    corpus = [
        {"_id": f"z{i}", "title": "", "text": "zebra " * (1 + i // 10) + f"note {i}"} for i in range(60)
    ]
    corpus += [{"_id": f"w{i}", "title": "", "text": f"grass note {i}"} for i in range(70)]
    queries = [{"_id": "q", "text": "zebra note 5"}]
    dataset = load_beir(
        write_beir(tmp_path / "many", corpus, queries, "query-id\tcorpus-id\tscore\nq\tz5\t1\n")
    )
    index, _ = build_eval_index(dataset, tiny_encoder(), chunk_tokens=64, overlap_tokens=0)
    with index:
        options = SearchOptions(mode="hybrid", dense_weight=1.0)
        users = [hit.path for hit in index.search("zebra note 5", options.replace(k=10))]
        deep = [hit.path for hit in index.search("zebra note 5", options.replace(k=130))]
        assert deep[:10] != users  # what an evaluation fusing its deep lists would have scored
        assert rank_documents(index, {"q": "zebra note 5"}, options, depth=100)["q"][:10] == users


# the CLI, as a user runs it
def test_cli_bm25_run_prints_json_and_appends_a_result_line(beir_dir, tiny_model_dir, tmp_path):
    results = tmp_path / "out" / "eval.jsonl"
    args = ["eval", "retrieval", str(beir_dir), "--model", str(tiny_model_dir), "--mode", "bm25"]
    args += ["--max-length", "64", "--chunk-tokens", "32", "--json", "--output", str(results)]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["metrics"]["ndcg@10"] == 1.0 and record["metrics"]["mrr@10"] == 1.0
    assert (record["task"], record["dataset"], record["split"], record["mode"]) == (
        "retrieval",
        "tinybeir",
        "test",
        "bm25",
    )
    assert (record["chunk_tokens"], record["max_length"], record["causal"]) == (32, 64, False)
    assert record["fingerprint"] and record["date"]
    assert [json.loads(line) for line in results.read_text().splitlines()] == [record]


def test_cli_keeps_the_judgement_of_a_document_without_text(beir_dir, tiny_model_dir):
    """Real collections judge documents with an empty title and text: judged, never retrieved, a warning."""
    write_beir(beir_dir, qrels=QRELS + "q1\tblank\t1\n")
    args = ["eval", "retrieval", str(beir_dir), "--model", str(tiny_model_dir), "--mode", "bm25"]
    result = run_cli(*args, "--max-length", "64", "--chunk-tokens", "32", "--json")
    assert result.returncode == 0, result.stderr
    assert "1 judged documents in corpus.jsonl have neither title nor text" in result.stderr
    assert json.loads(result.stdout)["metrics"]["recall@10"] == pytest.approx((0.5 + 1 + 1) / 3, abs=1e-4)


@pytest.mark.parametrize(
    ("extra_qrels", "args", "message"),
    [
        ("q7\tcat\t1\n", [], "test.tsv line 5: query id 'q7' is not in queries.jsonl"),
        ("", ["--mode", "fuzzy"], "unknown search mode 'fuzzy'"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_code_2(beir_dir, extra_qrels, args, message):
    write_beir(beir_dir, qrels=QRELS + extra_qrels)
    result = run_cli("eval", "retrieval", str(beir_dir), "--model", "no-model-needed", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_scifact_pairs_script_holds_out_queries_as_a_dev_split(tmp_path, tiny_model_dir):
    """`make_scifact_pairs.py --hold-out`: the held-out train queries make no pairs and are a `dev` split."""
    train = write_beir(tmp_path / "scifact", split="train")
    script = Path(__file__).resolve().parents[1] / "scripts" / "make_scifact_pairs.py"
    pairs, dev = tmp_path / "pairs.jsonl", tmp_path / "dev" / "scifact"
    command = [sys.executable, script, train, pairs, "--hold-out", "0.34", "--dev-dir", dev]
    subprocess.run([*command, "--model", tiny_model_dir], check=True, capture_output=True)
    held_out = load_beir(dev, split="dev")
    assert len(held_out.queries) == 1  # round(0.34 × 3 judged queries)
    assert held_out.corpus_hash == load_beir(train, split="train").corpus_hash  # the eval cache is reused
    paired = {json.loads(line)["query"] for line in pairs.read_text().splitlines()}
    assert len(paired) == 2 and paired.isdisjoint(held_out.queries.values())
    subprocess.run([*command, "--model", tiny_model_dir], check=True, capture_output=True)  # a rerun replaces
    corpus = (train / "corpus.jsonl").read_text()
    into_itself = [sys.executable, script, train, pairs, "--hold-out", "0.34", "--dev-dir", train]
    refused = subprocess.run([*into_itself, "--model", tiny_model_dir], capture_output=True, text=True)
    assert refused.returncode == 2 and "give a new folder as --dev-dir" in refused.stderr
    assert not (train / "corpus.jsonl").is_symlink() and (train / "corpus.jsonl").read_text() == corpus

"""`benchmarks/bm25_parity.py` end to end on a tiny data folder in the shared data's layout, a tiny model's
tokenizer chunking our side: every set and row is scored, the long-question set built and judged right."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("Stemmer", reason="PyStemmer (the dev and bench extras) gives bm25s its stemmer")

SETS = ("scifact test", "scifact train", "squad_dev", "squad_dev long", "squad_train long")
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bm25_parity.py"
DOCUMENTS = {
    "p1": "Volcanoes erupt molten lava when magma pressure builds beneath the crust.",
    "p2": "Glaciers carve valleys as compacted ice slowly flows downhill.",
    "p3": "Orchestras tune their violins before the conductor raises the baton.",
    "p4": "Bakers knead dough and let yeast ferment before baking bread.",
}
# Each question shares its words with one document only; p1 and p2 are asked about twice each.
QUESTIONS = {
    "q1": ("p1", "Why do volcanoes erupt lava?"),
    "q2": ("p1", "What builds magma pressure?"),
    "q3": ("p2", "How do glaciers carve valleys?"),
    "q4": ("p2", "Which way does compacted ice flow?"),
    "q5": ("p3", "When do orchestras tune violins?"),
    "q6": ("p4", "Why do bakers knead dough?"),
}


def write_set(folder: Path, splits: dict[str, list[str]]) -> None:
    (folder / "qrels").mkdir(parents=True)
    corpus = [{"_id": doc_id, "title": "", "text": text} for doc_id, text in DOCUMENTS.items()]
    queries = [{"_id": query_id, "text": text} for query_id, (_, text) in QUESTIONS.items()]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(row) + "\n" for row in queries))
    for split, query_ids in splits.items():
        lines = [f"{query_id}\t{QUESTIONS[query_id][0]}\t1\n" for query_id in query_ids]
        (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(lines))


def test_bm25_parity_scores_every_set_and_row(tmp_path, tiny_model_dir):
    data = tmp_path / "data"
    write_set(data / "scifact", {"test": ["q1", "q3", "q5"], "train": ["q2", "q4", "q6"]})
    write_set(data / "squad_dev", {"dev": list(QUESTIONS)})
    (data / "train").mkdir()
    with gzip.open(data / "train" / "squad_train_pairs.jsonl.gz", "wt") as handle:
        for doc_id, question in QUESTIONS.values():
            handle.write(json.dumps({"query": question, "positive": DOCUMENTS[doc_id]}) + "\n")
    arguments = ["--data", str(data), "--model", str(tiny_model_dir), "--causes", "--sets", *SETS]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in done.stdout.splitlines()]
    scores = {(row[0], row[3]): float(row[4]) for row in rows if len(row) == 6}
    rankers = ("bm25s (reference)", "ours", "ours, whole documents", "ours, repeated words")
    rankers += ("ours, Lucene's formula", "bm25s, k1 1.2", "bm25s, FTS5's IDF", "bm25s, FTS5's words")
    assert set(scores) == {(name, ranker) for name in SETS for ranker in (*rankers, "bm25s, distinct words")}
    assert all(score == 1.0 for score in scores.values())  # each question's words are in its document only
    shapes = {row[0]: row[1] for row in rows if len(row) == 6}
    assert shapes["squad_dev long"] == shapes["squad_train long"] == "2 (10)"  # p1's, p2's: 9 and 11 words

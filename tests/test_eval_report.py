"""`eval report`: saved runs read back, checked line by line, and shown side by side."""

import json
import os

import pytest
from rich.console import Console

from llm2vec_search.cli.eval_tables import results_tables, run_table
from llm2vec_search.errors import L2VError
from llm2vec_search.evaluation.report import append_result, load_results
from tests.conftest import run_cli

BM25 = {
    "task": "retrieval",
    "model": "gemma3-270m",
    "causal": False,
    "pooling": "mean",
    "max_length": 512,
    "dataset": "scifact",
    "split": "test",
    "mode": "bm25",
    "chunk_tokens": 256,
    "overlap_tokens": 32,
    "metrics": {"ndcg@10": 0.68643, "recall@10": 0.823, "recall@100": 0.91922, "mrr@10": 0.64798},
    "seconds": 16.9,
}
DENSE = {
    **BM25,
    "mode": "dense",
    "metrics": {"ndcg@10": 0.2, "recall@10": 0.9, "recall@100": 0.95, "mrr@10": 0.1},
}
STS = {
    "task": "sts",
    "model": "gemma3-270m",
    "causal": True,
    "dataset": "sts-test",
    "spearman": 37.8,
    "pairs": 9,
}


def render(table, styles: bool = False) -> str:
    console = Console(width=200, record=True, color_system="standard", file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(table)
    return console.export_text(styles=styles)


def test_appended_runs_come_back_in_order(tmp_path):
    path = tmp_path / "new" / "eval.jsonl"
    for record in (BM25, STS, DENSE):
        append_result(path, record)
    assert load_results(path) == [BM25, STS, DENSE]


def test_runs_are_side_by_side_one_table_per_task_best_in_bold(tmp_path):
    tables = results_tables([BM25, STS, DENSE])
    assert [table.title for table in tables] == ["retrieval", "STS"]
    text = render(tables[0])
    bm25_row = next(line for line in text.splitlines() if " bm25 " in line)
    assert "0.686" in bm25_row and "0.823" in bm25_row and "lexical, chunks 256/32" in bm25_row
    dense_row = next(line for line in text.splitlines() if " dense " in line)
    assert "0.950" in dense_row and "bidir, mean, len 512, chunks 256/32" in dense_row
    styled = render(tables[0], styles=True)
    bold = "\x1b[1m"
    assert f"{bold}0.686" in styled and f"{bold}0.200" not in styled  # the best per dataset is bold
    assert f"{bold}0.950" in styled  # dense has the better R@100
    assert "37.8" in render(tables[1]) and "causal" in render(tables[1])


def test_a_single_run_table_shows_figures_and_settings():
    text = render(run_table({**BM25, "fingerprint": "abc123", "docs": 5183, "chunks": 8972}))
    for expected in ("nDCG@10", "0.686", "abc123", "5183 / 8972", "scifact/test — bm25"):
        assert expected in text


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([json.dumps(BM25), "{not json"], "line 2: not valid JSON"),
        ([json.dumps({"task": "training"})], "line 1: not an eval result"),
        (
            [json.dumps(STS), json.dumps({"task": "retrieval"})],
            "line 2: a retrieval result without its figures",
        ),
        ([json.dumps({"task": "sts", "spearman": "high"})], "line 1: a sts result without its figures"),
        (["", "  "], "no results yet"),
    ],
)
def test_bad_results_files_name_the_line(tmp_path, lines, message):
    path = tmp_path / "eval.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(L2VError) as error:
        load_results(path)
    assert message in str(error.value) and str(path) in str(error.value)


def test_cli_report_prints_the_runs_and_rejects_a_missing_file(tmp_path):
    path = tmp_path / "eval.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (BM25, DENSE, STS)))
    shown = run_cli("eval", "report", str(path))
    assert shown.returncode == 0, shown.stderr
    assert "0.686" in shown.stdout and "0.200" in shown.stdout and "37.8" in shown.stdout
    missing = run_cli("eval", "report", str(tmp_path / "none.jsonl"))
    assert missing.returncode == 2
    assert "none.jsonl: cannot read" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1

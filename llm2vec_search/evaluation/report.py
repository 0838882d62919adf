"""Evaluation results as JSON lines (one run per line, appended by `--output`); `cli/eval_tables.py` shows
them side by side.

A record is a flat dict: "task" ("retrieval" or "sts"), the run's settings, and its figures
(`metrics` for retrieval, `spearman` for STS).
"""

import json
from pathlib import Path

from ..errors import L2VError

TASKS = ("retrieval", "sts")
METRIC_TITLES = {"ndcg@10": "nDCG@10", "recall@10": "R@10", "recall@100": "R@100", "mrr@10": "MRR@10"}


def append_result(path: Path, record: dict) -> None:
    """Append one JSON line (creating the file and its folder if needed)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise L2VError(f"{path}: cannot write results ({exc.strerror or exc})") from exc


def load_results(path: Path) -> list[dict]:
    """Every record in a results file; a line that is not a run record is an error naming the line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise L2VError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise L2VError(f"{path}: not UTF-8 text") from exc
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise L2VError(f"{path} line {number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(record, dict) or record.get("task") not in TASKS:
            raise L2VError(f'{path} line {number}: not an eval result (needs "task": retrieval or sts)')
        figures_ok = (
            isinstance(record.get("metrics"), dict)
            if record["task"] == "retrieval"
            else isinstance(record.get("spearman"), int | float)
        )
        if not figures_ok:
            raise L2VError(f"{path} line {number}: a {record['task']} result without its figures")
        records.append(record)
    if not records:
        raise L2VError(f"{path}: no results yet (write some with `l2v-search eval ... --output {path}`)")
    return records


__all__ = ["METRIC_TITLES", "TASKS", "append_result", "load_results"]

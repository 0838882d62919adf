"""Evaluation results (`evaluation.report` records) as Rich tables: one per task, one row per run, the best
figure per dataset in bold."""

from rich.table import Table

from ..evaluation.metrics import METRICS
from ..evaluation.report import METRIC_TITLES, TASKS


def _text(value: object) -> str:
    return "—" if value is None else str(value)


def _setup(record: dict) -> str:
    """How the model was run, in a few words: attention, pooling, token window (and chunking).

    BM25 uses only the model's tokenizer (to cut chunks), so its attention and pooling are not shown.
    """
    if record.get("mode") == "bm25":
        parts = ["lexical"]
    else:
        parts = [
            "causal" if record.get("causal") else "bidir",
            _text(record.get("pooling")),
            f"len {_text(record.get('max_length'))}",
        ]
    if record["task"] == "retrieval":
        parts.append(f"chunks {_text(record.get('chunk_tokens'))}/{_text(record.get('overlap_tokens'))}")
    return ", ".join(parts)


def _dataset(record: dict) -> str:
    split = record.get("split")
    return f"{_text(record.get('dataset'))}/{split}" if split else _text(record.get("dataset"))


def _figures(record: dict) -> dict[str, float | None]:
    if record["task"] == "sts":
        return {"Spearman×100": record["spearman"]}
    return {METRIC_TITLES[m]: record["metrics"].get(m) for m in METRICS}


def _figure_columns(records: list[dict]) -> dict[str, list[str]]:
    """Each figure formatted, the best of each dataset in bold."""
    columns: dict[str, list[str]] = {}
    for name in _figures(records[0]):
        values = [_figures(r)[name] for r in records]
        best: dict[str, float] = {}
        for record, value in zip(records, values, strict=True):
            if value is not None:
                best[_dataset(record)] = max(value, best.get(_dataset(record), value))
        digits = 1 if name.startswith("Spearman") else 3
        columns[name] = [
            "—"
            if value is None
            else (f"[bold]{value:.{digits}f}[/bold]" if value == best[_dataset(r)] else f"{value:.{digits}f}")
            for r, value in zip(records, values, strict=True)
        ]
    return columns


def comparison_table(records: list[dict]) -> Table:
    """Runs of one task side by side, one row each."""
    task = records[0]["task"]
    table = Table(title="retrieval" if task == "retrieval" else "STS")
    settings = {
        "dataset": [_dataset(r) for r in records],
        "model": [_text(r.get("model")) for r in records],
        "setup": [_setup(r) for r in records],
    }
    if task == "retrieval":
        settings["mode"] = [_text(r.get("mode")) for r in records]
    figures = _figure_columns(records)
    figures["seconds"] = [_text(r.get("seconds")) for r in records]
    for name in settings:
        table.add_column(name, overflow="fold")
    for name in figures:
        table.add_column(name, justify="right", no_wrap=True)
    for row in range(len(records)):
        table.add_row(*(cells[row] for cells in [*settings.values(), *figures.values()]))
    return table


def run_table(record: dict) -> Table:
    """One run: its figures, then everything about how it was made."""
    table = Table(title=f"{_dataset(record)}" + (f" — {record['mode']}" if record.get("mode") else ""))
    table.add_column("")
    table.add_column("value", overflow="fold")
    for name, value in _figures(record).items():
        table.add_row(name, f"[bold]{value:.3f}[/bold]" if value is not None else "—")
    details = {
        "model": record.get("model"),
        "fingerprint": record.get("fingerprint"),
        "setup": _setup(record),
    }
    if record["task"] == "retrieval":
        details |= {
            "queries": record.get("queries"),
            "docs / chunks": f"{record.get('docs')} / {record.get('chunks')}",
            "chunks embedded": record.get("chunks_embedded"),
            "seconds (index + search)": f"{record.get('index_seconds')} + {record.get('search_seconds')}",
        }
    else:
        details |= {"pairs / sentences": f"{record.get('pairs')} / {record.get('sentences')}"}
        details["seconds"] = record.get("seconds")
    for name, value in details.items():
        table.add_row(name, _text(value))
    return table


def results_tables(records: list[dict]) -> list[Table]:
    """One table per task present, runs in file order."""
    tables = []
    for task in TASKS:
        runs = [r for r in records if r["task"] == task]
        if runs:
            tables.append(comparison_table(runs))
    return tables


__all__ = ["comparison_table", "results_tables", "run_table"]

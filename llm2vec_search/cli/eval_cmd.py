"""`l2v-search eval`: retrieval quality on a BEIR dataset, similarity on STS pairs, and saved results."""

import datetime as dt
import json
from pathlib import Path

import typer
from rich.console import Console

from ..indexing.options import DEFAULT_MODE, SearchOptions
from .app import DenseWeightOption, DeviceOption, DtypeOption, ModelOption, app, console
from .progress import ProgressBars

REPORT_FILE_WIDTH = 160

eval_app = typer.Typer(
    help="Measure quality: retrieval on a BEIR dataset, similarity on STS pairs; compare saved runs.",
    no_args_is_help=True,
)
app.add_typer(eval_app, name="eval")

JsonOption = typer.Option(False, "--json", help="Print one JSON object instead of a table.")
OutputOption = typer.Option(
    None, "--output", "-o", help="Append the result, with its settings, as one JSON line to this file."
)
MaxLengthOption = typer.Option(
    None, "--max-length", help="Tokens per text the model sees (default: model's)."
)
CausalOption = typer.Option(False, "--causal", help="Keep causal attention (to compare with bidirectional).")
PoolingOption = typer.Option(None, help="mean, weighted_mean, last_token or bos (default: the model's).")


def _load_encoder(
    model: str,
    max_length: int | None,
    causal: bool,
    pooling: str | None,
    device: str,
    dtype: str,
    query_instruction: str | None = None,
):
    from ..encoder import Encoder

    return Encoder.from_pretrained(
        model,
        pooling=pooling,
        max_length=max_length,
        bidirectional=False if causal else None,
        query_instruction=query_instruction,
        device=device,
        dtype=dtype,
    )


def _settings(model: str, encoder, causal: bool) -> dict:
    """What every result record says about how it was made."""
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": model,
        "fingerprint": encoder.fingerprint,
        "causal": causal,
        "pooling": encoder.pooling,
        "max_length": encoder.max_length,
    }


def _emit(record: dict, as_json: bool, output: Path | None) -> None:
    from ..evaluation.report import append_result
    from .eval_tables import run_table

    if output is not None:
        append_result(output, record)
    if as_json:
        print(json.dumps(record))
    else:
        console.print(run_table(record))


@eval_app.command()
def retrieval(
    dataset_dir: Path = typer.Argument(
        ..., help="A BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv."
    ),
    model: str = ModelOption,
    mode: str = typer.Option(DEFAULT_MODE, help="bm25, hybrid or dense."),
    split: str = typer.Option("test", help="Which qrels/<split>.tsv to evaluate."),
    as_json: bool = JsonOption,
    output: Path | None = OutputOption,
    max_length: int | None = MaxLengthOption,
    chunk_tokens: int | None = typer.Option(
        None, help="Tokens per chunk (default: 256, less if the model window is shorter)."
    ),
    overlap_tokens: int | None = typer.Option(
        None, help="Tokens shared by neighbouring chunks (default: 32, or chunk-tokens/8 if less)."
    ),
    causal: bool = CausalOption,
    pooling: str | None = PoolingOption,
    query_instruction: str | None = typer.Option(
        None, help='Instruction the queries are embedded with ("" for none) (default: the model\'s).'
    ),
    dense_weight: float = DenseWeightOption,
    device: str = DeviceOption,
    dtype: str = DtypeOption,
) -> None:
    """nDCG@10, Recall@10/100 and MRR@10 of searching DATASET_DIR's corpus with the split's queries.

    The corpus goes through the same index users search (chunked, embedded, stored); it is cached, so another
    --mode on the same model and chunking reuses the embedded corpus.
    """
    from ..evaluation.beir import load_beir
    from ..evaluation.retrieval import run_retrieval

    options = SearchOptions(mode=mode, dense_weight=dense_weight)
    dataset = load_beir(dataset_dir, split)
    encoder = _load_encoder(model, max_length, causal, pooling, device, dtype, query_instruction)
    labels = {"index": "documents", "search": "queries"}
    with ProgressBars() as bars:
        result = run_retrieval(
            dataset,
            encoder,
            options,
            chunk_tokens,
            overlap_tokens,
            progress=lambda phase, done, total: bars.update(labels[phase], done, total),
        )
    record = {
        "task": "retrieval",
        **_settings(model, encoder, causal),
        "dataset": result.dataset,
        "split": result.split,
        "mode": mode,
        **({"dense_weight": dense_weight} if mode == "hybrid" else {}),
        "query_instruction": encoder.query_instruction,
        "chunk_tokens": result.chunk_tokens,
        "overlap_tokens": result.overlap_tokens,
        "metrics": {name: round(value, 5) for name, value in result.metrics.items()},
        "queries": result.queries,
        "docs": result.docs,
        "chunks": result.chunks,
        "chunks_embedded": result.chunks_embedded,
        "index_seconds": result.index_seconds,
        "search_seconds": result.search_seconds,
        "seconds": round(result.index_seconds + result.search_seconds, 2),
    }
    _emit(record, as_json, output)


@eval_app.command()
def sts(
    file: Path = typer.Argument(
        ..., help="STS-B file (genre, file, year, id, score, s1, s2) or score<TAB>s1<TAB>s2."
    ),
    model: str = ModelOption,
    as_json: bool = JsonOption,
    output: Path | None = OutputOption,
    max_length: int | None = MaxLengthOption,
    causal: bool = CausalOption,
    pooling: str | None = PoolingOption,
    device: str = DeviceOption,
    dtype: str = DtypeOption,
) -> None:
    """Spearman correlation (×100) between the model's cosine similarities and FILE's gold scores."""
    from ..evaluation.sts import evaluate_sts, load_sts

    pairs = load_sts(file)
    encoder = _load_encoder(model, max_length, causal, pooling, device, dtype)
    with ProgressBars() as bars:
        embedded = None if as_json else lambda done, total: bars.update("embedding", done, total)
        result = evaluate_sts(encoder, pairs, progress=embedded)
    record = {
        "task": "sts",
        **_settings(model, encoder, causal),
        "dataset": file.stem,
        "spearman": round(result.spearman, 3),
        "pairs": result.pairs,
        "sentences": result.sentences,
        "seconds": round(result.seconds, 2),
    }
    _emit(record, as_json, output)


@eval_app.command()
def report(file: Path = typer.Argument(..., help="A results file written with --output.")) -> None:
    """Show every run saved in FILE side by side, one table per task, the best figure per dataset in bold."""
    from ..evaluation.report import load_results
    from .eval_tables import results_tables

    # Piped to a file, the table keeps its full width instead of the 80 columns Rich assumes.
    out = console if console.is_terminal else Console(width=REPORT_FILE_WIDTH)
    for table in results_tables(load_results(file)):
        out.print(table)

"""`l2v-search doctor`: what a user needs to know when something is off, checked without loading a model."""

import os
import platform
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import typer
from rich import filesize
from rich.markup import escape
from rich.table import Table

from .. import __version__
from ..errors import L2VError
from .app import app, console, err_console
from .index_cmd import IndexDirOption
from .serve_cmd import DEFAULT_HOST, DEFAULT_PORT, check_port_free


@dataclass
class Finding:
    """One line of the report; `problem` (one line: what is wrong and what to do) makes doctor exit 1."""

    section: str
    label: str
    value: str
    problem: str | None = None


def _runtime() -> Iterator[Finding]:
    import torch

    from ..encoder import pick_device
    from ..encoder.onnx_query import import_onnxruntime

    yield Finding("runtime", "l2v-search", __version__)
    yield Finding("runtime", "python", f"{platform.python_version()} ({sys.executable})")
    yield Finding("runtime", "torch", torch.__version__)
    if torch.cuda.is_available():
        bf16 = "yes" if torch.cuda.is_bf16_supported() else "no"
        yield Finding("runtime", "CUDA", f"{torch.cuda.get_device_name(0)} (bf16 support: {bf16})")
    else:
        yield Finding("runtime", "CUDA", "not available: models run on the CPU")
    device, dtype = pick_device()
    yield Finding("runtime", "auto picks", f"{device.type}, {str(dtype).removeprefix('torch.')}")
    yield Finding("runtime", "CPU backend", f"torch, {torch.get_num_threads()} threads")
    version = import_onnxruntime().__version__
    telemetry = (
        "off" if os.environ.get("ORT_DISABLE_TELEMETRY") == "1" else "on (ORT_DISABLE_TELEMETRY is set)"
    )
    yield Finding("runtime", "query models", f"onnxruntime {version}, its telemetry {telemetry}")


def _models() -> Iterator[Finding]:
    from ..encoder.encoder import model_fingerprint
    from ..encoder.models import DEFAULT_BASE, cache_dir, model_status

    cache = cache_dir()
    size = sum(path.stat().st_size for path in cache.rglob("*") if path.is_file()) if cache.is_dir() else 0
    yield Finding("models", "cache", f"{cache} ({filesize.decimal(size)})")
    for row in model_status():
        state = "converted" if row.converted else "not converted yet" if row.installed else "not installed"
        problem = None
        if row.name == DEFAULT_BASE and not row.installed:
            problem = f"the default model's base weights ({row.name}) are not installed; run: {row.hint}"
        yield Finding("models", row.name, state, problem)
    try:
        yield Finding("models", "default fingerprint", model_fingerprint("default"))
    except L2VError as exc:
        yield Finding("models", "default fingerprint", "unknown", f"the default model cannot be used: {exc}")


def _indexes(index_dir: Path | None) -> Iterator[Finding]:
    from ..encoder.encoder import model_fingerprint
    from ..encoder.onnx_query import describe_query_path
    from ..indexing import Index
    from ..indexing.location import index_root, list_indexes

    root = index_root(index_dir).absolute()
    names = list_indexes(root)
    yield Finding("indexes", "index root", f"{root} ({len(names)} indexes)")
    try:
        default = model_fingerprint("default")
    except L2VError:
        default = None
    for name in names:
        try:
            with Index.open(name, root=root) as index:
                status = index.status()
                lost, orphans = index.vector_mismatch()
        except L2VError as exc:
            named = f"index '{name}'" in str(exc)  # damage messages already name the index
            problem = str(exc) if named else f"index '{name}' cannot be opened: {exc}"
            yield Finding("indexes", name, "cannot be opened", problem)
            continue
        same = "the current default" if status.fingerprint == default else "not the current default"
        value = f"{status.chunks} chunks, model {status.model} ({same})"
        problems = []
        try:
            expected = model_fingerprint(status.model)
        except L2VError as exc:
            problems.append(f"index '{name}': its model is not available ({exc})")
        else:
            if expected != status.fingerprint:
                problems.append(
                    f"index '{name}' was built with another version of model {status.model} (fingerprint "
                    f"{status.fingerprint}, now {expected}); dense and hybrid searches refuse it until "
                    f"`l2v-search index PATH --name {name} --rebuild`"
                )
        if lost or orphans:
            problems.append(
                f"index '{name}': {len(lost)} chunks have no vector and {len(orphans)} vectors have no chunk "
                "in SQLite (an update was interrupted?); rerun `l2v-search index` on its folders to repair it"
            )
        yield Finding("indexes", name, value, "; ".join(problems) or None)
        yield Finding("indexes", "  queries", describe_query_path(status.fingerprint, status.max_length))


def _server() -> Iterator[Finding]:
    from ..server import BatchSettings, Limits

    try:
        check_port_free(DEFAULT_HOST, DEFAULT_PORT)
        port = "free"
    except L2VError:
        port = "in use (a server already running?)"
    yield Finding("serve", "address", f"http://{DEFAULT_HOST}:{DEFAULT_PORT} ({port})")
    from ..serving import running_servers

    for server in running_servers():
        served = ", ".join(server.indexes.values())
        use = "needs a key: one-shot queries search here" if server.needs_key else "one-shot queries ask it"
        yield Finding("serve", f"running (pid {server.pid})", f"{server.url}: {served} ({use})")
    batch, limits = BatchSettings(), Limits()
    yield Finding("serve", "batching", f"up to {batch.max_batch} texts, {batch.wait_ms:g} ms wait")
    yield Finding(
        "serve",
        "limits",
        f"k ≤ {limits.max_k}, {limits.max_inputs} inputs of ≤ {limits.max_text_chars} characters, "
        f"bodies ≤ {filesize.decimal(limits.max_body_bytes)}",
    )


@app.command()
def doctor(index_dir: Path | None = IndexDirOption) -> None:
    """Check the set-up: Python, torch and device, model cache, indexes, server defaults; exit 1 if off."""
    findings = [*_runtime(), *_models(), *_indexes(index_dir), *_server()]
    table = Table(title="l2v-search doctor")
    for column in ("", "check", "value"):
        table.add_column(column)
    for finding in findings:
        mark = "[red]✗[/red]" if finding.problem else "[green]✓[/green]"
        table.add_row(mark, f"{finding.section}: {finding.label}", escape(finding.value))
    console.print(table)
    problems = [finding.problem for finding in findings if finding.problem]
    for problem in problems:
        err_console.print(f"[red]problem:[/red] {escape(problem)}", soft_wrap=True, highlight=False)
    if problems:
        raise typer.Exit(1)
    console.print("no problems found")

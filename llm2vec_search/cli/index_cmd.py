"""`l2v-search index` (build or update an index from folders) and `l2v-search status` (what it holds)."""

import json
import shlex
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich import filesize
from rich.table import Table

from ..errors import L2VError, one_line
from .app import DeviceOption, DtypeOption, app, console, err_console, print_error
from .progress import ProgressBars

if TYPE_CHECKING:
    from ..indexing import Index, IndexStatus, UpdateProgress, UpdateSummary

IndexDirOption = typer.Option(
    None,
    "--index-dir",
    envvar="L2V_SEARCH_INDEX_DIR",
    help="Folder holding named indexes (default ./indexes).",
)
# `status --check`'s exit code for an index that an interrupted update left unfinished (a rerun completes it).
EXIT_UNFINISHED = 3
NameOption = typer.Option(
    "default", "--name", "-n", help="Index name (a folder under --index-dir), or a path to an index folder."
)


def show_update(bars: ProgressBars) -> "Callable[[UpdateProgress], None]":
    """`Index.update`'s progress as bars: files hashed, then bytes of changed files embedded (chunks/s)."""

    def show(event: "UpdateProgress") -> None:
        if event.phase == "scan":
            bars.update("checking files", event.files_done, event.files_total)
            return
        speed = event.chunks_embedded / event.seconds if event.seconds > 0 else 0.0
        detail = (
            f"{event.files_done}/{event.files_total} files, {event.chunks_embedded} chunks ({speed:.1f}/s)"
        )
        bars.update("embedding", event.bytes_done, max(event.bytes_total, 1), detail=detail)

    return show


@app.command("index")
def index_command(
    paths: list[Path] = typer.Argument(..., help="Files or folders to index."),
    name: str = NameOption,
    index_dir: Path | None = IndexDirOption,
    model: str | None = typer.Option(
        None, "--model", "-m", help="Model spec (default: the index's own model; 'default' for a new index)."
    ),
    include: list[str] = typer.Option(
        [], "--include", help="Only index files matching this glob (repeatable)."
    ),
    exclude: list[str] = typer.Option([], "--exclude", help="Skip files matching this glob (repeatable)."),
    rebuild: bool = typer.Option(
        False, "--rebuild", help="Start a fresh index (the old one is searchable until done)."
    ),
    chunk_tokens: int | None = typer.Option(None, "--chunk-tokens", help="Chunk size in model tokens."),
    overlap_tokens: int | None = typer.Option(
        None, "--overlap-tokens", help="Overlap between chunks in tokens."
    ),
    index_type: str | None = typer.Option(
        None,
        "--index-type",
        help="auto, flat, hnsw, ivf, ivfsq or ivfpq (default: auto, or the index's current type).",
    ),
    device: str = DeviceOption,
    dtype: str = DtypeOption,
    ray_flag: bool = typer.Option(
        False,
        "--ray",
        help="Embed on a local Ray instance (needs the ray extra); --device/--dtype apply to its workers.",
    ),
    ray_address: str | None = typer.Option(
        None,
        "--ray-address",
        metavar="ADDRESS",
        help="Embed on the Ray cluster at ADDRESS (auto, ray://HOST:PORT or HOST:PORT); implies --ray.",
    ),
    ray_workers: int | None = typer.Option(
        None, "--ray-workers", help="With --ray: encoder actors (default: one per GPU, else one per 4 CPUs)."
    ),
    watch: bool = typer.Option(
        False,
        "--watch",
        "-w",
        help="After indexing, keep watching PATHS and update on changes (Ctrl-C stops).",
    ),
    debounce: float = typer.Option(
        1.0,
        "--debounce",
        min=0.05,
        max=60,
        help="With --watch: update once changes pause for this many seconds.",
    ),
) -> None:
    """Index PATHS into an index (created if needed); reruns only embed new and changed files."""
    from ..indexing import Index
    from ..indexing.ray_embed import LOCAL, check_address, import_ray, ray_embedder

    for path in paths:  # checked before the model loads, which takes seconds
        if not path.exists():
            raise L2VError(f"path not found: {path}")
    # An optional-value option (`--ray [ADDRESS]`) does not parse as the last option in click, hence two.
    ray = check_address(ray_address) if ray_address is not None else LOCAL if ray_flag else None
    if ray_workers is not None and ray is None:
        raise L2VError("--ray-workers needs --ray or --ray-address")
    if ray is not None:
        import_ray()
    with Index.open(
        name,
        root=index_dir,
        model=model,
        create=True,
        rebuild=rebuild,
        chunk_tokens=chunk_tokens,
        overlap_tokens=overlap_tokens,
        index_type=index_type,
        # With --ray this process only checks and ships the weights: exactly, as float32 on the CPU.
        device="cpu" if ray else device,
        dtype="float32" if ray else dtype,
    ) as index:
        embedding = ray_embedder(index.encoder, ray, ray_workers, device, dtype) if ray else nullcontext(None)
        with embedding as embedder, ProgressBars(detail="{task.fields[detail]}") as bars:
            summary = index.update(
                paths, include=include, exclude=exclude, progress=show_update(bars), embedder=embedder
            )
        _print_summary(summary, index.status())
        kept = summary.files_added + summary.files_changed + summary.files_unchanged
        if summary.files_removed and not kept:
            err_console.print(
                f"no readable text files left under {', '.join(map(str, paths))}: "
                f"their {summary.files_removed} files were removed from the index",
                soft_wrap=True,
                highlight=False,
                markup=False,
            )
        if embedder is not None:
            err_console.print(f"embedded on {embedder.pool.describe()}", markup=False)
        index.prepare_query_model(
            announce=lambda: err_console.print("building the query model (once per model, about 30 s)")
        )
        if watch:
            _watch(index, paths, include, exclude, debounce)


def _print_summary(summary: "UpdateSummary", status: "IndexStatus") -> None:
    table = Table(title=f"index '{status.name}' ({status.path})", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, value in (
        ("files added", summary.files_added),
        ("files changed", summary.files_changed),
        ("files removed", summary.files_removed),
        ("files unchanged", summary.files_unchanged),
        *((f"skipped ({reason})", count) for reason, count in sorted(summary.skipped.items())),
        ("chunks embedded", summary.chunks_added),
        ("chunks removed", summary.chunks_removed),
        ("time", f"{summary.seconds:.1f} s"),
        ("index now", f"{status.files} files, {status.chunks} chunks"),
        ("size on disk", filesize.decimal(status.size_bytes)),
    ):
        table.add_row(label, str(value))
    console.print(table)


def _watch(
    index: "Index", paths: list[Path], include: list[str], exclude: list[str], debounce: float
) -> None:
    """One line per update that changed something; errors are reported and watching goes on."""
    import time

    from ..indexing.watch import watch_index

    def ready() -> None:
        shown = ", ".join(map(str, paths))
        err_console.print(
            f"watching {shown} for changes (Ctrl-C stops)", soft_wrap=True, highlight=False, markup=False
        )

    def updated(summary: "UpdateSummary") -> None:
        status = index.status()
        console.print(
            f"{time.strftime('%H:%M:%S')} updated: {summary.files_added} added, {summary.files_changed} "
            f"changed, {summary.files_removed} removed, {summary.chunks_added} chunks embedded "
            f"in {summary.seconds:.1f} s; index now {status.files} files, {status.chunks} chunks",
            soft_wrap=True,
            highlight=False,
        )

    def failed(exc: Exception) -> None:
        what = exc if isinstance(exc, L2VError) else f"{type(exc).__name__}: {one_line(exc)}"
        print_error(f"{what} (retrying)")

    watch_index(
        index, paths, include, exclude, on_ready=ready, on_update=updated, on_error=failed, quiet_s=debounce
    )
    err_console.print("stopped watching")


@app.command("status")
def status_command(
    name: str = NameOption,
    index_dir: Path | None = IndexDirOption,
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON."),
    check: bool = typer.Option(
        False,
        "--check",
        help="Verify the index (SQLite, vectors, full-text rows, model); exit 2 if damaged, "
        f"{EXIT_UNFINISHED} if an interrupted update needs a rerun.",
    ),
) -> None:
    """Show what an index holds: files, chunks, model, dimension, size on disk, last run."""
    from ..indexing import Index
    from ..indexing.health import damaged

    with Index.open(name, root=index_dir) as index:
        health = index.check() if check else None
        busy = bool(health and health.unfinished) and index.being_updated()
        status, roots = index.status(), index.roots()
    if health and health.damage:
        raise damaged(status.name, "; ".join(health.damage))
    if health and health.unfinished:
        found = "; ".join(health.unfinished)
        again = shlex.join(["l2v-search", "index", *roots, "--name", name])
        if index_dir is not None:
            again += f" --index-dir {shlex.quote(str(index_dir))}"
        message = (
            f"index '{status.name}' is being updated ({found}); check again when it is done"
            if busy
            else f"index '{status.name}': interrupted run ({found}): rerun `{again}` to finish it"
        )
        err_console.print(message, soft_wrap=True, highlight=False, markup=False)
        raise typer.Exit(EXIT_UNFINISHED)
    if check:
        err_console.print(
            f"index '{status.name}' is sound: {status.files} files, {status.chunks} chunks", markup=False
        )
    if as_json:
        print(json.dumps(status.to_dict()))
        return
    table = Table(title=f"index '{status.name}'", show_header=False)
    table.add_column("field")
    table.add_column("value")
    last = status.last_run or {}
    for label, value in (
        ("path", status.path),
        ("files", status.files),
        ("chunks", status.chunks),
        ("model", status.model),
        ("fingerprint", status.fingerprint),
        ("dimension", status.dim),
        ("pooling", status.pooling),
        ("chunking", f"{status.chunk_tokens} tokens, {status.overlap_tokens} overlap"),
        ("vector index", f"{status.vector_index} (type {status.index_type})"),
        ("size on disk", filesize.decimal(status.size_bytes)),
        ("created", status.created_at),
        (
            "last run",
            f"{status.last_run_at} ({last.get('seconds', 0):.1f} s)" if status.last_run_at else "never",
        ),
    ):
        table.add_row(label, str(value))
    console.print(table)

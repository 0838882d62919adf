"""`l2v-search mcp`: the indexes as MCP tools over stdio, for agents and RAG clients that speak MCP."""

from pathlib import Path

import typer

from .app import DeviceOption, DtypeOption, app, err_console
from .index_cmd import IndexDirOption
from .serve_cmd import BatchWaitOption, MaxBatchOption


@app.command("mcp")
def mcp_command(
    names: list[str] = typer.Option(["default"], "--name", "-n", help="Index to offer (repeat for several)."),
    index_dir: Path | None = IndexDirOption,
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Model spec to load for dense/hybrid searches instead of the one each index records "
        "(it must be the model the index was built with).",
    ),
    max_batch: int = MaxBatchOption,
    batch_wait_ms: float = BatchWaitOption,
    device: str = DeviceOption,
    dtype: str = DtypeOption,
) -> None:
    """Serve indexes to MCP clients over stdio: tools search, get_chunk, get_document and status."""
    from ..server import Backend, BatchSettings
    from ..server.mcp_server import create_mcp_server

    settings = BatchSettings(max_batch=max_batch, wait_ms=batch_wait_ms)
    backend = Backend.load(
        names, index_dir, settings, lazy_models=True, model=model, device=device, dtype=dtype
    )
    try:
        err_console.print(
            f"l2v-search MCP server on stdio: {', '.join(backend.indexes)}", soft_wrap=True, markup=False
        )
        create_mcp_server(backend).run("stdio")
    finally:
        backend.close()

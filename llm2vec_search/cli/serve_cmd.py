"""`l2v-search serve`: the indexes and their model over HTTP, for RAG programs on this machine."""

import errno
import socket
from pathlib import Path

import typer

from ..errors import L2VError
from .app import DeviceOption, DtypeOption, app, err_console
from .index_cmd import IndexDirOption

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
# Shared with `mcp`, whose searches go through the same micro-batcher.
MaxBatchOption = typer.Option(64, min=1, max=1024, help="Most texts embedded in one forward pass.")
BatchWaitOption = typer.Option(5.0, min=0, max=1000, help="How long a batch waits for more requests (ms).")

# How long an idle connection is kept open. uvicorn's default (5 s) is also how long httpx (and so the OpenAI
# client) keeps an idle pooled connection: with equal timers the server can close a connection just as the
# client sends on it, and the request fails with a reset (ReadError, ~1 in 8,000 /search requests at 32
# clients in `benchmarks/serve_load.py`). A server timeout well above the clients' lets them close first.
KEEP_ALIVE_SECONDS = 75


@app.command()
def serve(
    names: list[str] = typer.Option(["default"], "--name", "-n", help="Index to serve (repeat for several)."),
    index_dir: Path | None = IndexDirOption,
    host: str = typer.Option(DEFAULT_HOST, help="Address to bind; anything but loopback needs --api-key."),
    port: int = typer.Option(DEFAULT_PORT, min=1, max=65535, help="TCP port."),
    api_key: str | None = typer.Option(
        None,
        envvar="L2V_SEARCH_API_KEY",
        show_envvar=False,
        help="Require 'Authorization: Bearer KEY': the name of an env var holding KEY, or KEY itself.",
    ),
    no_batching: bool = typer.Option(
        False, "--no-batching", help="Embed one request at a time (for comparison)."
    ),
    max_batch: int = MaxBatchOption,
    batch_wait_ms: float = BatchWaitOption,
    threads: int | None = typer.Option(
        None, min=1, max=256, help="CPU threads for the model (default: PyTorch's choice, one per core)."
    ),
    device: str = DeviceOption,
    dtype: str = DtypeOption,
) -> None:
    """Serve indexes to RAG programs: POST /search, POST /v1/embeddings (OpenAI-compatible), GET /indexes."""
    from ..server import Backend, BatchSettings, check_bind, create_app, is_loopback, resolve_api_key

    key = resolve_api_key(api_key)
    check_bind(host, key)
    check_port_free(host, port)
    if threads:
        import torch

        torch.set_num_threads(threads)
    settings = BatchSettings(batching=not no_batching, max_batch=max_batch, wait_ms=batch_wait_ms)
    backend = Backend.load(names, index_dir, settings, device=device, dtype=dtype)
    http_app = create_app(backend, api_key=key, loopback_only=is_loopback(host))
    import uvicorn

    shown = f"[{host}]" if ":" in host else host
    batching = "off" if no_batching else f"up to {max_batch} texts, {batch_wait_ms:g} ms wait"
    err_console.print(
        f"serving {', '.join(backend.indexes)} at http://{shown}:{port} (batching {batching}; "
        f"API docs at /docs{', API key required' if key else ''}); Ctrl+C stops",
        soft_wrap=True,
        markup=False,
    )
    from ..serving import announce, local_url

    folders = {name: served.index.path for name, served in backend.indexes.items()}
    with announce(local_url(host, port), folders, needs_key=key is not None):  # one-shot queries may ask us
        uvicorn.run(
            http_app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        )


def check_port_free(host: str, port: int) -> None:
    """Fail before the slow model load, with a clear line, if the address cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = (
                "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
            )
            raise L2VError(f"{host}:{port} {reason}; choose another --port or --host") from exc

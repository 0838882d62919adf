"""`l2v-search mcp`: the indexes as Model Context Protocol tools, for agents and RAG clients over stdio.

A thin layer over the same `Backend` as the HTTP server (one shared encoder per model, micro-batched, indexes
re-read when another process updates them), built on the official `mcp` SDK. Every tool only reads. The only
tool that opens files, `get_document`, reads nothing but files the index holds whose real path (symlinks
resolved) lies inside a folder the index was built from. Bad input becomes a one-line tool error.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field, ValidationError

from .. import __version__
from ..errors import L2VError
from ..indexing.discover import is_under, path_key, path_of
from ..indexing.extract import SkipFile, read_lines
from ..indexing.search import chunk_dict
from .app import Limits
from .backend import Backend, ServedIndex
from .schema import options_from, with_search_signature

READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
# SQLite's largest integer: a chunk id past it cannot exist (and cannot be asked for).
MAX_CHUNK_ID = 2**63 - 1
# The most text `get_document` returns in one call; a caller asks for a line range to read the rest.
MAX_DOCUMENT_CHARS = 100_000

IndexName = Annotated[
    str | None, Field(description="Index to use (see the status tool); the first served index when omitted.")
]


@contextmanager
def _tool_errors() -> Iterator[None]:
    """Our user errors reach the client as tool errors carrying their one-line message."""
    try:
        yield
    except L2VError as exc:
        raise ToolError(str(exc)) from None


def readable_file(served: ServedIndex, path: str) -> Path:
    """The indexed file `path` names (absolute, or relative to one of the index's roots), if it may be read.

    `..` is resolved before the check, and the file's real path must lie inside a root's real path, so
    neither `../` nor a symlink leads out of the folders the index was built from.
    """
    roots = served.index.roots()
    if not roots:
        raise L2VError(f"index '{served.name}' records no folders; rerun `l2v-search index PATH` on it once")
    candidates = [path] if os.path.isabs(path) else [os.path.join(root, path) for root in roots]
    known = served.index.store.files()
    real_roots = [os.path.realpath(root) for root in roots]
    for candidate in map(os.path.abspath, candidates):
        file = path_of(candidate)  # a name with bytes that are not UTF-8 is stored escaped
        if candidate in known and is_under(path_key(os.path.realpath(file)), real_roots):
            return file
    raise L2VError(f"{path} is not a file of index '{served.name}' (only indexed files inside its folders)")


class _OneLineErrorServer(MCPServer):
    """Arguments that fail a tool's schema are reported by the SDK with pydantic's multi-line text; the
    client gets the first problem on one line instead, as the HTTP server does."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if not isinstance(exc.__cause__, ValidationError):
                raise
            first = exc.__cause__.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "arguments"
            raise ToolError(f"Error executing tool {name}: {where}: {first['msg']}") from exc.__cause__


def create_mcp_server(backend: Backend, limits: Limits | None = None) -> MCPServer:
    """The MCP server over an already loaded `Backend` (which the caller closes)."""
    limits = limits or Limits()
    server = _OneLineErrorServer(
        name="l2v-search",
        version=__version__,
        log_level="WARNING",  # its request log would flood the client's view of our stderr
        instructions=(
            "Search local folders indexed by l2v-search. Use `search` to find passages, then `get_chunk` or "
            "`get_document` to read more around a hit; `status` lists the indexes."
        ),
    )

    async def search(query: str, index: str | None = None, **options: Any) -> dict:
        """Search an index; each hit has its chunk id, file path, line range, heading, score and text."""
        with _tool_errors():
            served, hits = await backend.search(query, options_from(options), index)
        return {"index": served.name, "mode": options["mode"], "hits": [hit.to_dict() for hit in hits]}

    server.tool(annotations=READ_ONLY)(with_search_signature(search, limits.max_k, limits.max_text_chars))

    @server.tool(annotations=READ_ONLY)
    def get_chunk(
        chunk_id: Annotated[int, Field(ge=0, le=MAX_CHUNK_ID, description="The chunk_id of a search hit.")],
        index: IndexName = None,
    ) -> dict:
        """The full text of one indexed chunk, with its file path, line range and heading."""
        with _tool_errors():
            served = backend.index(index)
            with served.lock:
                row = served.index.store.chunks_by_id([chunk_id]).get(chunk_id)
            if row is None:
                raise L2VError(f"index '{served.name}' has no chunk {chunk_id}")
        return chunk_dict(row)

    @server.tool(annotations=READ_ONLY)
    def get_document(
        path: Annotated[str, Field(min_length=1, description="A file path from a search hit.")],
        start_line: Annotated[int, Field(ge=1, description="First line to return (from 1).")] = 1,
        end_line: Annotated[
            int | None, Field(ge=1, description="Last line to return (default: the end).")
        ] = None,
        index: IndexName = None,
    ) -> dict:
        """The text of an indexed file, or of a line range of it, as the index extracted it (line numbers
        match those of search hits). Only files the index holds can be read."""
        with _tool_errors():
            served = backend.index(index)
            with served.lock:
                file = readable_file(served, path)
            name = path_key(file)  # as the index and its search hits write it
            if end_line is not None and end_line < start_line:
                raise L2VError(f"end_line {end_line} is before start_line {start_line}")
            try:
                lines = read_lines(file, start_line, end_line, MAX_DOCUMENT_CHARS)
            except (OSError, SkipFile) as exc:
                raise L2VError(f"cannot read {name}: {exc}") from None
            if start_line > max(lines.total, 1):
                raise L2VError(f"{name} has {lines.total} lines; start_line {start_line} is past the end")
        return {
            "path": name,
            "start_line": start_line,
            "end_line": lines.end,
            "total_lines": lines.total,
            "text": lines.text,
            "truncated": lines.truncated,
        }

    @server.tool(annotations=READ_ONLY)
    def status() -> dict:
        """The served indexes (files, chunks, model, folders) and the models loaded so far."""
        with _tool_errors():
            indexes = []
            for name in list(backend.indexes):
                served = backend.index(name)
                indexes.append({**served.describe(), "roots": served.index.roots()})
        return {
            "version": __version__,
            "indexes": indexes,
            "models_loaded": [model.describe() for model in list(backend.models.values())],
        }

    return server

"""`l2v-search mcp` end to end: a real server subprocess over stdio, driven by the `mcp` SDK's own client."""

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from llm2vec_search.indexing import Index
from llm2vec_search.indexing.options import SearchOptions
from llm2vec_search.indexing.search import CHUNK_FIELDS, HIT_FIELDS
from tests.conftest import ROOT, cli_command, cli_env, run_cli, save_tiny_model

NOTES = {
    "cats.md": "# Cats\n\nThe cat sat on the mat.\n\n## Dogs\n\nIt looked at the dog in the park.\n",
    "markets.md": "# Markets\n\nStock markets fell sharply after the announcement.\n",
    "sub/proteins.txt": "Proteins fold into three dimensional structures.\n",
}
SECRET = "Classified zebrafinch payroll numbers.\n"


@dataclass
class Setup:
    env: dict[str, str]
    index_dir: Path
    notes: Path
    outside: Path
    log: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Setup:
    """An index over a folder in which an indexed file was since replaced by a symlink to a file outside it
    (discovery skips links out of the root, so only such a swap puts one in the index): `get_document` must
    still never read through it."""
    tmp = tmp_path_factory.mktemp("mcp")
    notes = tmp / "notes"
    for name, text in NOTES.items():
        (notes / name).parent.mkdir(parents=True, exist_ok=True)
        (notes / name).write_text(text)
    outside = tmp / "secret.md"
    outside.write_text(SECRET)
    (notes / "link.md").write_text("A note that is about to become a link.\n")
    index_dir = tmp / "indexes"
    model_dir = save_tiny_model(tmp / "model")
    with Index.open("notes", root=index_dir, model=str(model_dir), create=True) as index:
        index.update([notes])
        assert str(notes / "link.md") in index.store.files()
    (notes / "link.md").unlink()
    (notes / "link.md").symlink_to(outside)
    env = {
        "L2V_SEARCH_CACHE_DIR": str(tmp / "cache"),
        "L2V_SEARCH_INDEX_DIR": str(index_dir),
        "PYTHONPATH": str(ROOT),
    }
    return Setup(env, index_dir, notes, outside, tmp / "server.log")


def with_session(setup: Setup, body: Callable[[ClientSession], Awaitable[None]], *args: str) -> None:
    """Start `l2v-search mcp` as a real subprocess and run `body` against it with the SDK's client."""
    command, *arguments = cli_command("mcp", "--name", "notes", *args)
    params = StdioServerParameters(
        command=command,
        args=arguments,
        env=setup.env,
        cwd=str(ROOT),
    )

    async def run() -> None:
        with setup.log.open("a") as log, anyio.fail_after(300):  # generous: a loaded CI machine is slow
            async with stdio_client(params, errlog=log) as streams, ClientSession(*streams) as session:
                await session.initialize()
                await body(session)

    anyio.run(run)


async def call(session: ClientSession, tool: str, **arguments) -> dict:
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, result.content[0].text
    return result.structured_content or json.loads(result.content[0].text)


async def call_error(session: ClientSession, tool: str, **arguments) -> str:
    result = await session.call_tool(tool, arguments)
    assert result.is_error, result
    message = result.content[0].text
    assert "\n" not in message and "Traceback" not in message, message
    return message


def test_lists_tools_and_searches_without_loading_the_model_for_bm25(setup):
    async def body(session: ClientSession) -> None:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(tools) == {"search", "get_chunk", "get_document", "status"}
        schema = tools["search"].input_schema
        assert schema["required"] == ["query"]
        assert set(schema["properties"]) == {"query", "k", "mode", "path_glob", "dense_weight", "index"}
        assert schema["properties"]["mode"]["enum"] == ["bm25", "dense", "hybrid"]
        assert schema["properties"]["dense_weight"]["maximum"] == 100  # from SearchOptions
        assert all(tool.description for tool in tools.values())

        status = await call(session, "status")
        assert [index["name"] for index in status["indexes"]] == ["notes"]
        assert status["indexes"][0]["roots"] == [str(setup.notes)]
        assert status["models_loaded"] == []

        found = await call(session, "search", query="stock markets", k=2, mode="bm25")
        assert found["index"] == "notes" and found["mode"] == "bm25"
        best = found["hits"][0]
        assert best["path"] == str(setup.notes / "markets.md")
        assert {"chunk_id", "start_line", "end_line", "heading", "score", "text"} <= set(best)
        assert (await call(session, "status"))["models_loaded"] == []  # BM25 never loads the model

        assert list(best) == list(HIT_FIELDS)  # the one hit serializer, as over HTTP and in the CLI's JSON
        filtered = await call(session, "search", query="proteins fold", mode="hybrid", path_glob="*.txt")
        assert [hit["path"] for hit in filtered["hits"]] == [str(setup.notes / "sub/proteins.txt")]
        dense = await call(session, "search", query="a dog in the park", mode="dense", k=10)
        assert len(dense["hits"]) == 5  # every chunk, ranked by the (random) tiny model
        loaded = (await call(session, "status"))["models_loaded"]
        assert len(loaded) == 1 and loaded[0]["requests"] == 2  # loaded once, both queries batched by it

        weighted = await call(session, "search", query="a dog", mode="hybrid", k=5, dense_weight=3.0)
        with Index.open("notes", root=setup.index_dir) as index:
            expected = index.search("a dog", SearchOptions(k=5, mode="hybrid", dense_weight=3.0))
        assert [hit["score"] for hit in weighted["hits"]] == pytest.approx(
            [h.score for h in expected], abs=1e-5
        )

    with_session(setup, body)


def test_reads_chunks_and_documents_only_inside_the_indexed_folder(setup):
    async def body(session: ClientSession) -> None:
        hit = (await call(session, "search", query="dog park"))["hits"][0]
        chunk = await call(session, "get_chunk", chunk_id=hit["chunk_id"])
        assert chunk == {name: hit[name] for name in CHUNK_FIELDS}

        whole = await call(session, "get_document", path=hit["path"])
        assert whole["text"] == NOTES["cats.md"] and whole["total_lines"] == 7
        part = await call(session, "get_document", path="cats.md", start_line=5, end_line=7)
        assert part["text"] == "## Dogs\n\nIt looked at the dog in the park.\n"
        assert part["path"] == str(setup.notes / "cats.md")
        nested = await call(session, "get_document", path="sub/proteins.txt")
        assert nested["text"] == NOTES["sub/proteins.txt"]

        for escape in (
            "../secret.md",
            str(setup.notes / ".." / "secret.md"),
            str(setup.outside),
            "/etc/passwd",
            "link.md",  # a symlink inside the folder to a file outside it
            str(setup.notes / "link.md"),
        ):
            message = await call_error(session, "get_document", path=escape)
            assert "is not a file of index 'notes'" in message, message
        assert "no chunk 999999" in await call_error(session, "get_chunk", chunk_id=999999)

    with_session(setup, body)


def test_bad_arguments_are_one_line_tool_errors_and_the_server_keeps_serving(setup):
    async def body(session: ClientSession) -> None:
        assert "no index named 'nope'" in await call_error(session, "search", query="cat", index="nope")
        assert "empty" in await call_error(session, "search", query="   ")
        await call_error(session, "search", query="")
        await call_error(session, "search", query="cat", k=0)
        await call_error(session, "search", query="cat", k=101)
        await call_error(session, "search", query="cat", mode="fuzzy")
        await call_error(session, "search", k=3)
        await call_error(session, "get_chunk", chunk_id="one")
        await call_error(session, "get_document", path="cats.md", start_line=50)
        reversed_range = await call_error(session, "get_document", path="cats.md", start_line=5, end_line=3)
        assert "end_line 3 is before start_line 5" in reversed_range
        assert "chunk_id" in await call_error(session, "get_chunk", chunk_id=2**63)
        assert "not the model" in await call_error(session, "search", query="cat", mode="dense")
        assert (await call(session, "search", query="cat", mode="bm25"))["hits"]  # still serving

    other_model = save_tiny_model(setup.log.parent / "other-model", family="llama")
    with_session(setup, body, "--model", str(other_model))


def test_unknown_index_is_a_one_line_error_before_serving(setup):
    done = run_cli("mcp", "--name", "missing", env=cli_env(**setup.env), timeout=300, cwd=ROOT)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"error: no index named 'missing' at {setup.index_dir / 'missing'} (indexes here: notes); "
        "create it with `l2v-search index PATH`"
    ]

"""The interactive loop of `l2v-search query`: commands piped into a real subprocess, and a real terminal
session (pseudo-tty) for readline history and Ctrl-C / Ctrl-D."""

import re
from pathlib import Path

import pytest

from llm2vec_search.indexing import Index
from llm2vec_search.indexing.options import DEFAULT_MODE
from tests.conftest import DOCS, Terminal, cli_command, run_cli, write_files

LATENCY = re.compile(r"^(\d+) hits? in (\d+) ms \((.*)\)$", re.MULTILINE)
UP_ARROW = "\x1b[A"
CTRL_D = "\x04"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_model_dir) -> Path:
    """DOCS indexed in-process (saves a subprocess) into workdir/indexes/default with the tiny model dir."""
    folder = tmp_path_factory.mktemp("interactive")
    write_files(folder / "docs", DOCS)
    with Index.open(folder / "indexes" / "default", model=str(tiny_model_dir), create=True) as index:
        index.update([folder / "docs"])
    return folder


def test_piped_session_runs_queries_and_commands(workdir):
    commands = [
        "ball",
        ":k 1",
        ":mode bm25",
        "ball",
        ":open 1",
        ":open 9",
        ":path *.txt",
        "ball",
        ":path",
        ":mode dense",
        "ball",
        ":k zero",
        ":mode fuzzy",
        ":bogus",
        ":help",
        ":quit",
        "never searched",
    ]
    result = run_cli("query", stdin="\n".join(commands) + "\n", cwd=workdir)
    assert result.returncode == 0, result.stderr
    answers = LATENCY.findall(result.stdout)
    assert [settings for _, _, settings in answers] == [
        f"mode {DEFAULT_MODE}, k 10",
        "mode bm25, k 1",
        "mode bm25, k 1, path *.txt",
        "mode dense, k 1",
    ]
    assert int(answers[0][0]) > 1 and all(count == "1" for count, _, _ in answers[1:])
    assert result.stderr.count("loaded ") == 1  # the model is loaded once, before the first query

    after_path_filter = result.stdout.split("path filter: *.txt")[1]
    assert re.match(r"\s*1\. docs/notes\.txt:1-2  ", after_path_filter)

    opened = result.stdout.split("mode is now bm25")[1]
    header = re.search(r"^1\. (docs/\S+):(\d+)-(\d+)  chars (\d+)-(\d+)$", opened, re.MULTILINE)
    assert header, opened
    source = (workdir / header[1]).read_text()
    assert source[int(header[4]) : int(header[5])] in opened  # the whole chunk, not a snippet

    for message in (
        ":open needs a hit number from 1 to 1",
        ":k needs a whole number",
        "unknown search mode 'fuzzy'",
        "unknown command :bogus",
    ):
        assert message in result.stderr
    assert ":open N" in result.stdout  # :help
    assert "Traceback" not in result.stderr


def test_end_of_input_ends_the_session_and_interactive_flag_runs_the_text_first(workdir):
    result = run_cli("query", "ball", "-i", "--mode", "bm25", stdin=":k 1\nball\n", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert [settings for _, _, settings in LATENCY.findall(result.stdout)] == [
        "mode bm25, k 10",
        "mode bm25, k 1",
    ]
    assert "loaded " not in result.stderr  # BM25 never needs the model


def test_terminal_session_keeps_readline_history_across_sessions(workdir, tmp_path):
    history = tmp_path / "model-cache" / "history"  # $L2V_SEARCH_CACHE_DIR/history (see conftest)
    first = Terminal(cli_command("query", "--mode", "bm25"), workdir)
    first.read_until("search> ")
    first.send("install\n")
    first.read_until(r"hits? in \d+ ms[\s\S]*search> $")  # keys sent before the prompt would race readline
    first.send(UP_ARROW + "\n")  # recall the last line: the same query again
    output = first.read_until(r"hits? in \d+ ms[\s\S]*hits? in \d+ ms")
    assert len(LATENCY.findall(output)) == 2
    assert "guide.md" in output  # a table row on the terminal
    first.read_until(r"search> $")
    first.interrupt()
    assert first.finish() == 0
    assert "Traceback" not in first.output
    assert "install" in history.read_text()

    second = Terminal(cli_command("query", "--mode", "bm25", "-k", "1"), workdir)
    second.read_until("search> ")
    second.send(UP_ARROW + "\n")  # the first session's query, read from the history file
    output = second.read_until(r"hits? in \d+ ms")
    assert "install" in output
    second.read_until(r"search> $")
    second.send(CTRL_D)
    assert second.finish() == 0

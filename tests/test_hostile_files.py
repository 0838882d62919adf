"""Hostile files in an indexed folder, one table row each: `l2v-search index` (a real subprocess, a tiny
model) must index the good file beside it, count or safely name the bad one, and never fail the run."""

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_index_cli import run_cli, status

from llm2vec_search.indexing.extract import SkipFile, extract

WORD = "hostile"


def nested_html(depth: int) -> str:
    return "<div>" * depth + WORD + "</div>" * depth


@dataclass
class FileCase:
    make: Callable[[Path], None]  # writes the hostile entry into the corpus folder
    files: int  # files in the index afterwards, good.md included
    skipped: str | None = None  # the summary line that counts the hostile entry
    shown: str | None = None  # what `query` prints as its location


FILE_CASES = {
    "name-not-utf8": FileCase(
        lambda d: (d / os.fsdecode(b"bad\xff.txt")).write_text(WORD), files=2, shown="bad\\xff.txt:1"
    ),
    "newline-in-name": FileCase(
        lambda d: (d / "two\nlines.txt").write_text(WORD), files=2, shown="two\\nlines.txt:1"
    ),
    "html-nested-100k-deep": FileCase(
        lambda d: (d / "deep.html").write_text(nested_html(100_000)), files=2, shown="deep.html:1"
    ),
}


@pytest.mark.parametrize("case", FILE_CASES.values(), ids=FILE_CASES.keys())
def test_hostile_file_never_stops_a_run(case: FileCase, tmp_path, tiny_model_dir):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.md").write_text("# Good\n\nA plain good file.\n")
    case.make(corpus)
    result = run_cli("index", "corpus", "--model", str(tiny_model_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert status(tmp_path)["files"] == case.files
    if case.skipped:
        assert f"skipped ({case.skipped})" in result.stdout
    if case.shown:
        found = run_cli("query", WORD, cwd=tmp_path)
        assert found.returncode == 0, found.stderr
        locations = [line.split()[1] for line in found.stdout.splitlines() if line[:1].isdigit()]
        assert f"corpus/{case.shown}" in locations, found.stdout


def test_extraction_gives_up_after_its_time_limit(tmp_path):
    page = tmp_path / "deep.html"
    page.write_text(nested_html(1_000))
    assert extract(page).text == WORD
    with pytest.raises(SkipFile, match="too slow"):
        extract(page, time_limit=0)

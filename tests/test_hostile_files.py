"""Hostile files in an indexed folder, one table row each: `l2v-search index` (a real subprocess, a tiny
model) must index the good file beside it, count or safely name the bad one, and never fail the run."""

import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from llm2vec_search.indexing import Index
from llm2vec_search.indexing.chunking import MAX_HEADING_CHARS
from llm2vec_search.indexing.extract import SkipFile, extract
from llm2vec_search.indexing.options import SearchOptions
from tests.conftest import assert_user_error, build_corpus_index, run_cli

WORD = "hostile"


def nested_html(depth: int) -> str:
    return "<div>" * depth + WORD + "</div>" * depth


def _link_outside(corpus: Path, name: str) -> None:
    """A file (or, for a name ending in "/", a folder holding one) beside the corpus, linked from it."""
    target = corpus.parent / name.rstrip("/")
    if name.endswith("/"):
        target.mkdir()
        (target / "notes.txt").write_text(WORD)
    else:
        target.write_text(WORD)
    (corpus / "link").symlink_to(target)


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
    "heading-100kb": FileCase(
        lambda d: (d / "huge.md").write_text("# " + "title " * 17_000 + "\n\n" + (WORD + " text. ") * 5000),
        files=2,
        shown="huge.md:3",
    ),
    "symlink-to-a-file-outside": FileCase(
        lambda d: _link_outside(d, "secret.txt"), files=1, skipped="link out of root"
    ),
    "symlink-to-a-folder-outside": FileCase(
        lambda d: _link_outside(d, "private/"), files=1, skipped="link out of root"
    ),
}


@pytest.mark.parametrize("case", FILE_CASES.values(), ids=FILE_CASES.keys())
def test_hostile_file_never_stops_a_run(case: FileCase, tmp_path, tiny_model_dir):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.md").write_text("# Good\n\nA plain good file.\n")
    case.make(corpus)
    result = run_cli("index", "corpus", "--model", str(tiny_model_dir), cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    if case.skipped:
        assert f"skipped ({case.skipped})" in result.stdout
    # What the run left is read in-process (each CLI process costs seconds of imports); the printed
    # location is the one thing only a `query` process shows.
    with Index.open(tmp_path / "indexes" / "default") as index:
        assert index.status().files == case.files
        if case.shown:
            hits = index.search(WORD, SearchOptions(k=100))
            assert max(len(hit.heading) for hit in hits) <= MAX_HEADING_CHARS
    if case.shown:
        found = run_cli("query", WORD, "-k", "100", cwd=tmp_path)
        assert found.returncode == 0, found.stderr
        locations = [line.split()[1] for line in found.stdout.splitlines() if line[:1].isdigit()]
        assert f"corpus/{case.shown}" in locations, found.stdout


def test_extraction_gives_up_after_its_time_limit(tmp_path):
    page = tmp_path / "deep.html"
    page.write_text(nested_html(1_000))
    assert extract(page).text == WORD
    with pytest.raises(SkipFile, match="too slow"):
        extract(page, time_limit=0)


def _write_vectors(index: Path, dim: int, drop_id: int | None = None) -> None:
    """Replace vectors.faiss by an empty index of `dim` dimensions, or drop one chunk's vector from it."""
    import faiss
    import numpy as np

    path = str(index / "vectors.faiss")
    vectors = faiss.IndexIDMap2(faiss.IndexFlatIP(dim)) if drop_id is None else faiss.read_index(path)
    if drop_id is not None:
        vectors.remove_ids(faiss.IDSelectorBatch(np.array([drop_id], dtype=np.int64)))
    faiss.write_index(vectors, path)


def _sql(index: Path, statement: str) -> None:
    with sqlite3.connect(index / "index.db") as conn:
        conn.execute(statement)


@dataclass
class DamageCase:
    damage: Callable[[Path], None]  # damages the index folder
    command: list[str]
    message: str | None  # the one error line `command` must give; None: it must still work
    rebuild: bool = False  # also show that `index --rebuild` recovers (a model load: slow, so not every row)


DAMAGE_CASES = {
    "vectors-garbage": DamageCase(
        lambda i: (i / "vectors.faiss").write_text("garbage"),
        ["query", "plants", "--mode", "dense"],
        "damaged: cannot read",
    ),
    "vectors-garbage-bm25-still-answers": DamageCase(
        lambda i: (i / "vectors.faiss").write_text("garbage"), ["query", "plants", "--mode", "bm25"], None
    ),
    "vectors-garbage-index-run": DamageCase(
        lambda i: (i / "vectors.faiss").write_text("garbage"), ["index", "corpus"], "--rebuild", rebuild=True
    ),
    "vectors-deleted": DamageCase(
        lambda i: (i / "vectors.faiss").unlink(),
        ["query", "plants", "--mode", "dense"],
        "vectors.faiss is missing (4 chunks have no vector)",
    ),
    "vectors-other-dimension": DamageCase(
        lambda i: _write_vectors(i, 8),
        ["query", "plants", "--mode", "dense"],
        "holds 8-dimensional vectors, the index 32",
    ),
    "vectors-one-lost": DamageCase(
        lambda i: _write_vectors(i, 32, drop_id=1), ["status", "--check"], "1 chunks have no vector"
    ),
    "db-garbage": DamageCase(
        lambda i: (i / "index.db").write_text("garbage" * 1000),
        ["status"],
        "index.db cannot be read (file is not a database)",
        rebuild=True,
    ),
    "db-empty-vectors-left": DamageCase(
        lambda i: (i / "index.db").write_bytes(b""),
        ["index", "corpus"],
        "index.db is empty while vectors.faiss remains",
    ),
    "db-deleted-vectors-left": DamageCase(
        lambda i: (i / "index.db").unlink(), ["index", "corpus"], "index.db is missing while vectors.faiss"
    ),
    "info-dim-not-a-number": DamageCase(
        lambda i: _sql(i, "UPDATE info SET value = 'abc' WHERE key = 'dim'"),
        ["query", "plants"],
        "setting 'dim' is 'abc', not a number",
    ),
    "fts-table-dropped": DamageCase(
        lambda i: _sql(i, "DROP TABLE chunks_fts"),
        ["query", "plants"],
        "index.db has no chunks_fts table",
    ),
    "model-gone": DamageCase(
        lambda i: _sql(i, "UPDATE info SET value = '/nowhere/model' WHERE key = 'model'"),
        ["status", "--check"],
        "model '/nowhere/model' is not on this machine",
    ),
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, tiny_model_dir) -> Path:
    """A small index built once; each damage case works on a copy."""
    return build_corpus_index(tmp_path_factory.mktemp("pristine"), tiny_model_dir)


@pytest.mark.parametrize("case", DAMAGE_CASES.values(), ids=DAMAGE_CASES.keys())
def test_damaged_index_says_what_and_rebuild_recovers(case: DamageCase, pristine, tmp_path, tiny_model_dir):
    workdir = tmp_path / "work"
    shutil.copytree(pristine, workdir)
    case.damage(workdir / "indexes" / "default")
    result = run_cli(*case.command, cwd=workdir)
    if case.message is None:
        assert result.returncode == 0, result.stderr
    else:
        assert_user_error(result, case.message)
        assert "damaged" in result.stderr and "--rebuild" in result.stderr
    if not case.rebuild:
        return
    rebuilt = run_cli(
        "index", "corpus", "--rebuild", "--model", str(tiny_model_dir), cwd=workdir, timeout=600
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    checked = run_cli("status", "--check", cwd=workdir)
    assert checked.returncode == 0 and "is sound: 3 files, 4 chunks" in checked.stderr, checked.stderr

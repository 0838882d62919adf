"""`l2v-search index PATH --watch` end to end: a real watcher subprocess over a real folder, queried until
each change shows (bounded waits), then stopped with Ctrl-C."""

import fcntl
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from llm2vec_search.errors import L2VError
from llm2vec_search.indexing import Index
from llm2vec_search.indexing.location import LOCK_NAME
from llm2vec_search.indexing.options import SearchOptions
from tests.conftest import ROOT, cli_command, cli_env, save_tiny_model

STORM_FILES = 300


def wait_until(what: str, check: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.2)


def files_with(index_dir: Path, word: str) -> list[str] | None:
    """Names of the files whose chunks contain `word` (BM25: never loads the model); None before the index
    exists."""
    try:
        with Index.open("w", root=index_dir) as index:
            return sorted(
                {Path(hit.path).name for hit in index.search(word, SearchOptions(k=50, mode="bm25"))}
            )
    except L2VError:
        return None


def file_count(index_dir: Path) -> int:
    with Index.open("w", root=index_dir) as index:
        return index.status().files


def test_watch_applies_creates_edits_deletes_renames_and_a_storm_as_one_update(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.md").write_text("alpha apple\n")
    (folder / "b.md").write_text("bravo banana\n")
    (folder / "c.md").write_text("charlie cherry\n")
    index_dir = tmp_path / "indexes"
    model_dir = save_tiny_model(tmp_path / "model")
    out, err = tmp_path / "watch.out", tmp_path / "watch.err"
    args = ["index", str(folder), "--watch", "--name", "w", "--index-dir", str(index_dir)]
    with out.open("w") as stdout, err.open("w") as stderr:
        watcher = subprocess.Popen(
            cli_command(*args, "--model", str(model_dir)),
            env=cli_env(L2V_SEARCH_CACHE_DIR=str(tmp_path / "cache")),
            stdout=stdout,
            stderr=stderr,
            cwd=ROOT,
            # A backgrounded test run ignores SIGINT and children inherit that; Ctrl-C must reach this one.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        wait_until("the first pass", lambda: files_with(index_dir, "apple") == ["a.md"], timeout=300)
        wait_until("the watcher", lambda: "watching" in err.read_text() or watcher.poll() is not None)
        assert watcher.poll() is None, err.read_text()

        (folder / "d.md").write_text("delta durian\n")
        wait_until("a new file", lambda: files_with(index_dir, "durian") == ["d.md"])
        (folder / "a.md").write_text("alpha avocado\n")
        wait_until("an edit", lambda: files_with(index_dir, "avocado") == ["a.md"])
        assert files_with(index_dir, "apple") == []
        (folder / "b.md").unlink()
        wait_until("a deletion", lambda: files_with(index_dir, "banana") == [])
        (folder / "c.md").rename(folder / "e.md")
        wait_until("a rename", lambda: files_with(index_dir, "cherry") == ["e.md"])
        with (index_dir / "w" / LOCK_NAME).open("a") as lock:  # another writer holds the index for a while
            fcntl.flock(lock, fcntl.LOCK_EX)
            (folder / "f.md").write_text("foxtrot fig\n")
            wait_until("the busy index reported", lambda: "being updated by another" in err.read_text())
        wait_until("the retry", lambda: files_with(index_dir, "fig") == ["f.md"])
        updates_before_storm = out.read_text().count(" updated: ")
        assert updates_before_storm == 5, out.read_text()

        storm = folder / "storm"
        storm.mkdir()
        for i in range(STORM_FILES):
            (storm / f"s{i}.txt").write_text(f"gale number {i}\n")
        wait_until("the storm", lambda: f"index now {4 + STORM_FILES} files" in out.read_text())
        assert out.read_text().count(" updated: ") == updates_before_storm + 1, out.read_text()
        assert "300 added, 0 changed, 0 removed" in out.read_text().splitlines()[-1]
    finally:
        watcher.send_signal(signal.SIGINT)
        code = watcher.wait(timeout=120)
    messages = err.read_text()
    assert code in (0, 130), messages
    assert "stopped watching" in messages or "interrupted" in messages, messages
    assert "Traceback" not in messages, messages
    assert files_with(index_dir, "gale") and file_count(index_dir) == 4 + STORM_FILES  # still opens, whole

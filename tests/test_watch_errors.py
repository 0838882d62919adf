"""Watch mode goes on after any failed update, not just a user error: the failure is reported once and the
update retried (after the next change, or after a back-off without one) until it succeeds. It follows a file
root across editor-style saves and a root folder that is deleted and made again."""

import os
import shutil
import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np

from llm2vec_search.errors import L2VError
from llm2vec_search.indexing import Index
from llm2vec_search.indexing.location import take_lock
from llm2vec_search.indexing.options import SearchOptions
from llm2vec_search.indexing.watch import watch_index


class FlakyEmbedder:
    """The index's model, failing on its first call as a GPU that ran out of memory would."""

    window = 128

    def __init__(self, index: Index) -> None:
        self.index = index
        self.failures = 1

    def embed(self, texts: Sequence[str]) -> Iterator[np.ndarray]:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        yield self.index.encoder.encode(list(texts))


def wait_for(what: str, check, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.05)


def indexed(root, word: str) -> bool:
    with Index.open("w", root=root) as index:
        return bool(index.search(word, SearchOptions(mode="bm25")))


def test_watch_reports_any_failure_and_keeps_going(tmp_path, tiny_model_dir):
    notes, root = tmp_path / "notes", tmp_path / "indexes"
    notes.mkdir()
    (notes / "a.md").write_text("alpha apple\n")
    with Index.open("w", root=root, model=str(tiny_model_dir), create=True) as index:
        index.update([notes])
    index = Index.open("w", root=root)
    ready, stop = threading.Event(), threading.Event()
    errors: list[Exception] = []
    watcher = threading.Thread(
        target=watch_index,
        args=(index, [notes]),
        kwargs=dict(
            on_ready=ready.set,
            on_update=lambda summary: None,
            on_error=errors.append,
            quiet_s=0.2,
            stop=stop,
            embedder=FlakyEmbedder(index),
        ),
    )
    watcher.start()
    try:
        assert ready.wait(60)
        (notes / "b.md").write_text("bravo banana\n")
        wait_for("the model's failure", lambda: errors)
        assert isinstance(errors[0], RuntimeError) and watcher.is_alive()
        wait_for("the retry without a further change", lambda: indexed(root, "banana"))

        lock = take_lock(root / "w", "w")  # another process updating the index, as far as the watcher knows
        (notes / "c.md").write_text("charlie cherry\n")
        wait_for("the busy index's error", lambda: len(errors) == 2)
        assert isinstance(errors[1], L2VError) and "another process" in str(errors[1])
        lock.close()
        wait_for("the update once the index is free", lambda: indexed(root, "cherry"))
        assert len(errors) == 2 and watcher.is_alive()  # each failure said once
    finally:
        stop.set()
        watcher.join(30)
        index.close()


def start_watching(index: Index, roots: list, errors: list) -> tuple[threading.Thread, threading.Event]:
    ready, stop = threading.Event(), threading.Event()
    watcher = threading.Thread(
        target=watch_index,
        args=(index, roots),
        kwargs=dict(
            on_ready=ready.set, on_update=lambda summary: None, on_error=errors.append, quiet_s=0.2, stop=stop
        ),
    )
    watcher.start()
    assert ready.wait(60)
    return watcher, stop


def editor_save(path, text: str) -> None:
    """Save as most editors do: a new file, renamed over the old one."""
    temporary = path.with_name(f".{path.name}.swp")
    temporary.write_text(text)
    os.replace(temporary, path)


def test_watch_follows_a_file_root_across_saves_and_a_folder_root_that_comes_back(tmp_path, tiny_model_dir):
    note, folder, root = tmp_path / "note.md", tmp_path / "docs", tmp_path / "indexes"
    note.write_text("first draft\n")
    folder.mkdir()
    (folder / "a.md").write_text("alpha apple\n")
    with Index.open("w", root=root, model=str(tiny_model_dir), create=True) as index:
        index.update([note, folder])
    index = Index.open("w", root=root)
    errors: list[Exception] = []
    watcher, stop = start_watching(index, [note, folder], errors)
    try:
        for word in ("secondword", "thirdword", "fourthword"):
            editor_save(note, f"a draft with {word}\n")
            wait_for(f"the save with {word}", lambda word=word: indexed(root, word))

        shutil.rmtree(folder)
        wait_for("the missing root's report", lambda: any("disappeared" in str(e) for e in errors))
        folder.mkdir()
        (folder / "b.md").write_text("bravo banana\n")
        wait_for("the folder that came back", lambda: indexed(root, "banana"))
        (folder / "c.md").write_text("charlie cherry\n")
        wait_for("a change in it, watched again", lambda: indexed(root, "cherry"))
        assert watcher.is_alive()
    finally:
        stop.set()
        watcher.join(30)
        index.close()

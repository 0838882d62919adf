"""Watch mode goes on after any failed update, not just a user error: the failure is reported once and the
update retried (after the next change, or after a back-off without one) until it succeeds."""

import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np

from llm2vec_search.errors import L2VError
from llm2vec_search.indexing import Index
from llm2vec_search.indexing.location import take_lock
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
        return bool(index.search(word, mode="bm25"))


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

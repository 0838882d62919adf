"""A rebuild's swap (old folder aside, new folder in place) is finished only by the process that holds the
lock: a reader opening the index meanwhile waits for it, and a swap cut short by a crash is finished by
whoever opens the index next."""

import fcntl
import os
import threading
import time

from llm2vec_search.indexing import Index
from llm2vec_search.indexing.location import LOCK_NAME, folder_size, retired_folder, staging_folder
from llm2vec_search.indexing.options import SearchOptions


def build(folder, text: str, model) -> None:
    corpus = folder.parent / f"{folder.name}-corpus"
    corpus.mkdir()
    (corpus / "note.txt").write_text(text)
    with Index.open(folder, model=str(model), create=True) as index:
        index.update([corpus])


def words(folder) -> set[str]:
    with Index.open(folder) as index:
        return {
            word for hit in index.search("old new", SearchOptions(mode="bm25")) for word in hit.text.split()
        }


def half_swapped(tmp_path, model):
    """An index folder moved aside as a swap's first rename leaves it, the rebuild waiting to go in."""
    folder = tmp_path / "idx"
    build(folder, "the old index\n", model)
    build(staging_folder(folder), "the new index\n", model)
    os.replace(folder, retired_folder(folder))
    return folder


def test_a_reader_waits_for_a_swap_in_progress_and_never_finishes_it(tmp_path, tiny_model_dir):
    folder = half_swapped(tmp_path, tiny_model_dir)
    lock = open(retired_folder(folder) / LOCK_NAME, "a+")  # noqa: SIM115  (the swapping writer's lock)
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    failures = []

    def writer_finishes_the_swap() -> None:
        time.sleep(0.5)
        try:
            os.replace(staging_folder(folder), folder)
        except OSError as exc:
            failures.append(exc)
        lock.close()

    writer = threading.Thread(target=writer_finishes_the_swap)
    writer.start()
    seen = words(folder)
    writer.join()
    assert not failures, failures  # the reader did not take the writer's rename from it
    assert "new" in seen


def test_a_swap_cut_short_by_a_crash_is_finished_on_open(tmp_path, tiny_model_dir):
    folder = half_swapped(tmp_path, tiny_model_dir)
    assert "new" in words(folder)
    assert not retired_folder(folder).exists() and not staging_folder(folder).exists()


def test_folder_size_counts_files_and_takes_a_missing_folder_as_empty(tmp_path):
    """`status` reads the size while another process may swap the folder's files: a folder or file that is
    gone counts as nothing instead of failing the reader."""
    (tmp_path / "a").write_bytes(b"x" * 10)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"y" * 5)
    assert folder_size(tmp_path) == 10
    assert folder_size(tmp_path / "gone") == 0
    assert folder_size(tmp_path / "a") == 0

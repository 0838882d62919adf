"""Nothing a user has is lost when a run fails: a folder named as the index keeps its files, a write that
fails (a full disk, a file size limit) leaves the last saved index intact, and files deleted from disk leave
the index even when they were the last ones under their folder. Real CLI subprocesses where a user sees it."""

import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from llm2vec_search.indexing import Index
from llm2vec_search.indexing.options import SearchOptions
from llm2vec_search.indexing.vectors import VectorIndex
from tests.conftest import assert_user_error, run_cli, snapshot, write_numbered_notes

# Run in a child: add vectors to a saved index, cap the size of any file this process writes 100 bytes short
# of what the save needs (SIGXFSZ ignored, so the write fails with EFBIG as on a full disk), and save.
CAPPED_SAVE = """
import resource, signal, sys
from pathlib import Path
import faiss, numpy as np
from llm2vec_search.errors import L2VError
from llm2vec_search.indexing.vectors import VectorIndex
path = Path(sys.argv[1])
vectors = VectorIndex.load(path)
vectors.add(np.arange(1000, 1100), np.random.default_rng(1).standard_normal((100, vectors.dim)))
needed = len(faiss.serialize_index(vectors.index))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (needed - 100, resource.RLIM_INFINITY))
try:
    vectors.save(path)
except L2VError as exc:
    print(exc)
    sys.exit(3)
"""


def test_a_failed_first_run_never_deletes_a_folder_it_did_not_make(tmp_path, tiny_model_dir):
    model = ("--model", str(tiny_model_dir))
    precious = tmp_path / "P" / "precious.txt"
    precious.parent.mkdir()
    precious.write_text("keep\n")
    (tmp_path / "E").mkdir()
    refused = run_cli("index", "E", "--name", f"{tmp_path}/P/", *model, cwd=tmp_path)
    assert_user_error(refused, "is not an index and not empty")
    assert precious.read_text() == "keep\n"

    # A folder the run made itself is removed again, with the parents it made, and nothing above them.
    failed = run_cli("index", "E", "--name", f"{tmp_path}/new/deeper/idx", *model, cwd=tmp_path)
    assert_user_error(failed, "nothing to index")
    assert not (tmp_path / "new").exists() and precious.exists()
    # An empty folder that already existed stays (empty), as it was.
    (tmp_path / "kept").mkdir()
    assert_user_error(run_cli("index", "E", "--name", f"{tmp_path}/kept", *model, cwd=tmp_path), "nothing")
    assert (tmp_path / "kept").is_dir() and not any((tmp_path / "kept").iterdir())


def test_a_save_cut_short_by_a_size_limit_keeps_the_previous_vectors(tmp_path):
    path = tmp_path / "vectors.faiss"
    vectors = VectorIndex.create(32)
    vectors.add(np.arange(500), np.random.default_rng(0).standard_normal((500, 32)))
    vectors.save(path)
    before = path.read_bytes()
    child = subprocess.run(
        [sys.executable, "-c", CAPPED_SAVE, str(path)], capture_output=True, text=True, timeout=120
    )
    assert child.returncode == 3, child.stdout + child.stderr
    assert "cannot write" in child.stdout and "File too large" in child.stdout
    assert "the index is intact" in child.stdout
    assert path.read_bytes() == before and VectorIndex.load(path).count == 500
    assert not path.with_name("vectors.faiss.tmp").exists()


def test_deleting_the_last_file_under_a_root_removes_it_from_the_index(tmp_path, tiny_model_dir):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "secret.txt").write_text("the vault code is zebra crossing\n")
    (tmp_path / "other.txt").write_text("an unrelated zebra note\n")
    with Index.open(tmp_path / "indexes" / "default", model=str(tiny_model_dir), create=True) as index:
        index.update([docs, tmp_path / "other.txt"])
    (docs / "secret.txt").unlink()

    pruned = run_cli("index", "docs", cwd=tmp_path)
    assert pruned.returncode == 0, pruned.stderr
    assert "no readable text files left under docs" in pruned.stderr
    with Index.open("default", root=tmp_path / "indexes") as index:
        paths = {Path(hit.path).name for hit in index.search("zebra", SearchOptions(mode="bm25"))}
        assert paths == {"other.txt"}  # the other root's file stays
        assert index.status().files == 1
        assert index.vector_mismatch() == (set(), set())  # the secret's vectors went with its chunks
        assert index.vectors.count == index.status().chunks


def run_capped(limit: int, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`run_cli` with every file the process writes capped at `limit` bytes, as a full disk would stop it
    (SIGXFSZ ignored, so writes past the cap fail with EFBIG instead of killing the process)."""

    def cap() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return run_cli(*args, cwd=cwd, preexec_fn=cap)


def chunks_of(state: dict, paths: set[str]) -> list:
    """A snapshot's committed chunks of the files in `paths`."""
    return [chunk for chunk in state["chunks"] if chunk[0] in paths]


def test_index_runs_cut_short_by_a_write_limit_lose_nothing(tmp_path, tiny_model_dir):
    corpus = write_numbered_notes(tmp_path / "corpus", 60)
    folder = tmp_path / "indexes" / "default"  # where `index corpus` run in tmp_path keeps it
    with Index.open(folder, model=str(tiny_model_dir), create=True) as index:  # as `index` does
        index.update([corpus])
        index.prepare_query_model()
        before = snapshot(index)
    saved = tmp_path / "baseline"
    shutil.copytree(folder, saved)
    # The next run: 140 new files, 5 changed, 5 deleted.
    write_numbered_notes(corpus, 200)
    changed = {corpus / f"group{i}" / f"note{i:03d}.txt" for i in range(5, 10)}
    for i in range(5):
        (corpus / f"group{i}" / f"note{i:03d}.txt").unlink()
    for path in changed:
        path.write_text(f"{path.stem} was rewritten about thunder\n")
    untouched = {path for path, _ in before["files"]} - {str(p) for p in changed}
    untouched -= {str(corpus / f"group{i}" / f"note{i:03d}.txt") for i in range(5)}
    with Index.open(tmp_path / "clean", model=str(tiny_model_dir), create=True) as clean:
        clean.update([corpus])
        expected = snapshot(clean)

    # Caps at which the run stops: before any change, after the removals, and (when the run is slow enough
    # for a timed checkpoint) after some of the new chunks were committed.
    points = set()
    for limit in (100_000, 300_000, 1_600_000):
        shutil.rmtree(folder)
        shutil.copytree(saved, folder)
        cut = run_capped(limit, "index", "corpus", cwd=tmp_path)
        if cut.returncode:
            assert_user_error(cut, "the index is intact as of its last save")
            assert "cannot write" in cut.stderr
        with Index.open(folder) as index:
            state = snapshot(index)
            assert set(state["committed_ids"]) <= set(state["faiss"])  # every chunk searchable by meaning
            assert index.search("thunder copper", SearchOptions(mode="hybrid", k=5))
        assert chunks_of(state, untouched) == chunks_of(before, untouched)  # nothing indexed is lost
        points.add((cut.returncode, len(state["chunks"])))
        with Index.open(folder) as index:  # the rerun, in-process: the cut run above is the CLI's
            index.update([corpus])
            got = snapshot(index)
        assert got["files"] == expected["files"] and got["chunks"] == expected["chunks"]  # nor duplicated
        assert got["fts"] == len(got["chunks"]) and got["faiss"] == got["committed_ids"]
    assert len({point for point in points if point[0] == 2}) >= 2, points

"""kill -9 during an index update (as `l2v-search index` runs it), at several points: the index stays
searchable, and a rerun finishes with exactly the files and chunks of a clean build. Also: searching while
another process writes."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llm2vec_search.indexing import Index
from llm2vec_search.indexing.options import SearchOptions
from tests.conftest import snapshot, write_numbered_notes

FILE_COUNT = 400


@pytest.fixture
def setup(tmp_path, tiny_model_dir):
    return write_numbered_notes(tmp_path / "corpus", FILE_COUNT), tmp_path / "indexes", tiny_model_dir


# What `l2v-search index CORPUS --name NAME --index-dir ROOT --model MODEL` runs, committing after every batch
# so that a kill can land between any two checkpoints.
WRITER = """
import sys
from llm2vec_search.indexing import Index
corpus, name, root, model = sys.argv[1:]
with Index.open(name, root=root, model=model, create=True, chunk_tokens=16, overlap_tokens=4) as index:
    index.update([corpus], checkpoint_seconds=0)
"""


def start_index(corpus: Path, root: Path, model: Path, name: str = "crash") -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", WRITER, str(corpus), name, str(root), str(model)]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def chunk_rows(db: Path) -> int:
    """Rows in `chunks` (pending included), read as any other process would; -1 before the table exists."""
    if not db.exists():
        return -1
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
    except sqlite3.OperationalError:
        return -1


def kill_when(process: subprocess.Popen, db: Path, rows: int) -> bool:
    """SIGKILL the process once `chunks` holds `rows` rows; False if it finished first."""
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if chunk_rows(db) >= rows:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.005)
    process.wait()
    return False


def test_kill_9_at_several_points_then_rerun_matches_a_clean_build(setup):
    corpus, root, model = setup
    db = root / "crash" / "index.db"
    killed = []
    for extra_rows in (0, 150, 500):  # 0: as soon as the table exists, i.e. during creation
        base = max(chunk_rows(db), 0)
        killed.append(kill_when(start_index(corpus, root, model), db, base + extra_rows))
        if not db.exists():
            continue
        with Index.open("crash", root=root) as index:
            # What searches see is consistent: every committed chunk has its vector on disk.
            assert set(index.store.committed_chunk_ids()) <= set(index.vectors.ids().tolist())
            index.search("river stone", SearchOptions(mode="hybrid"))
    assert killed.count(True) >= 2, "the runs finished before they could be killed; grow FILE_COUNT"
    final = start_index(corpus, root, model)
    assert final.wait(timeout=120) == 0, final.stderr.read().decode()

    with Index.open(
        root / "clean", model=str(model), create=True, chunk_tokens=16, overlap_tokens=4
    ) as clean:
        clean.update([corpus])
        expected = snapshot(clean)
    with Index.open("crash", root=root) as recovered:
        got = snapshot(recovered)
        assert recovered.status().files == FILE_COUNT
    assert got["files"] == expected["files"]
    assert got["chunks"] == expected["chunks"]  # nothing lost, nothing duplicated
    assert got["fts"] == len(got["chunks"]) == got["fts"]
    assert got["faiss"] == got["committed_ids"]
    assert not (root / "crash" / "vectors.faiss.tmp").exists()


def test_searching_while_another_process_indexes(setup):
    corpus, root, model = setup
    db = root / "live" / "index.db"
    writer = start_index(corpus, root, model, name="live")
    searches, counts = 0, []
    try:
        while writer.poll() is None and chunk_rows(db) <= 0:
            time.sleep(0.01)
        with Index.open("live", root=root) as index:
            while writer.poll() is None:
                index.search("copper lantern", SearchOptions(mode="hybrid", k=5))
                index.search("harbor", SearchOptions(mode="bm25", k=5))
                counts.append(index.status().chunks)
                searches += 1
            assert writer.wait() == 0, writer.stderr.read().decode()
            index.refresh()
            final = index.status().chunks
            assert len(index.search("meadow violet", SearchOptions(mode="dense", k=3))) == 3
    finally:
        if writer.poll() is None:
            writer.kill()
    assert searches >= 3, "the index run ended before any search overlapped it"
    assert counts == sorted(counts) and counts[-1] <= final  # readers only ever see progress

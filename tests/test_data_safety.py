"""Nothing a user has is lost when a run fails: a folder named as the index keeps its files, a write that fails
(a full disk, a file size limit) leaves the last saved index intact, and files deleted from disk leave the
index even when they were the last ones under their folder. Real CLI subprocesses where a user would see it."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from llm2vec_search.indexing import Index
from llm2vec_search.indexing.vectors import VectorIndex
from tests.test_index_cli import assert_user_error, run_cli

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
        paths = {Path(hit.path).name for hit in index.search("zebra", mode="bm25")}
        assert paths == {"other.txt"}  # the other root's file stays
        assert index.status().files == 1
        assert index.vector_mismatch() == (set(), set())  # the secret's vectors went with its chunks
        assert index.vectors.count == index.status().chunks

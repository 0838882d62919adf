"""`l2v-search doctor` as a real subprocess: exit 0 on a sound set-up, 1 with one line per problem."""

import subprocess
from pathlib import Path

from llm2vec_search.indexing import Index
from llm2vec_search.indexing.vectors import VECTORS_NAME
from tests.conftest import ROOT, cli_env, run_cli, save_tiny_model


def doctor(tmp_path: Path, index_dir: Path) -> subprocess.CompletedProcess:
    env = cli_env(L2V_SEARCH_CACHE_DIR=str(tmp_path / "cache"), COLUMNS="200")
    return run_cli("doctor", "--index-dir", str(index_dir), env=env, timeout=300, cwd=ROOT)


def test_doctor_reports_each_broken_index_on_one_line(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.md").write_text("The cat sat on the mat.\n")
    (folder / "b.md").write_text("Stock markets fell sharply.\n")
    model_dir = save_tiny_model(tmp_path / "model")
    index_dir = tmp_path / "indexes"
    for name in ("good", "lost", "stale"):
        with Index.open(name, root=index_dir, model=str(model_dir), create=True) as index:
            index.update([folder])
            fingerprint = index.status().fingerprint

    sound = doctor(tmp_path, index_dir)
    assert sound.returncode == 0, sound.stdout + sound.stderr
    assert "no problems found" in sound.stdout and sound.stderr == ""
    assert "torch" in sound.stdout and "auto picks" in sound.stdout and "3 indexes" in sound.stdout
    assert "2 chunks, model" in sound.stdout

    (index_dir / "lost" / VECTORS_NAME).unlink()  # as if the vectors never reached the disk
    with Index.open("stale", root=index_dir) as index, index.store.transaction():
        index.store.set_info(fingerprint="0123456789abcdef")  # as if its model had changed since
    broken = doctor(tmp_path, index_dir)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert broken.stderr.splitlines() == [
        "problem: index 'lost' is damaged: vectors.faiss is missing (2 chunks have no vector); rebuild it "
        "with `l2v-search index PATH... --name lost --rebuild` (and --model MODEL if index.db is lost)",
        f"problem: index 'stale' was built with another version of model {model_dir} (fingerprint "
        f"0123456789abcdef, now {fingerprint}); dense and hybrid "
        "searches refuse it until `l2v-search index PATH --name stale --rebuild`",
    ]
    assert "Traceback" not in broken.stdout + broken.stderr

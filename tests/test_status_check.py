"""`l2v-search status --check` tells an update that was cut short (a rerun finishes it: exit 3) from damage
(a rebuild is needed: exit 2)."""

import shlex
from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from llm2vec_search.indexing import Index
from tests.conftest import CORPUS, assert_user_error, run_cli, write_files


class InterruptedEmbedder:
    """Embeds `batches` batches of random vectors, then stops the run as Ctrl-C would."""

    window = 1

    def __init__(self, batches: int) -> None:
        self.batches = batches

    def embed(self, texts: Sequence[str]) -> Iterator[np.ndarray]:
        if not self.batches:
            raise KeyboardInterrupt
        self.batches -= 1
        yield np.random.default_rng(self.batches).standard_normal((len(texts), 32)).astype(np.float32)


def test_check_says_rerun_after_an_interrupted_run_and_damaged_only_for_damage(tmp_path, tiny_model_dir):
    corpus = write_files(tmp_path / "corpus", CORPUS)
    with Index.open(tmp_path / "indexes" / "default", model=str(tiny_model_dir), create=True) as index:
        index.update([corpus])
    (corpus / "readme.md").write_text("# Changed\n\nA new text about tides and harbors.\n")
    (corpus / "later.txt").write_text("One more file to embed.\n")
    with Index.open("default", root=tmp_path / "indexes") as index, pytest.raises(KeyboardInterrupt):
        index.update([corpus], checkpoint_seconds=0, embedder=InterruptedEmbedder(batches=1))

    interrupted = run_cli("status", "--check", cwd=tmp_path)
    assert interrupted.returncode == 3, interrupted.stderr
    assert "interrupted run" in interrupted.stderr and "damaged" not in interrupted.stderr
    command = interrupted.stderr.split("rerun `", 1)[1].split("`", 1)[0]
    assert command.startswith("l2v-search index ") and str(corpus) in command

    rerun = run_cli(*shlex.split(command)[1:], cwd=tmp_path)  # the command as said (run as -m)
    assert rerun.returncode == 0, rerun.stderr
    sound = run_cli("status", "--check", cwd=tmp_path)
    assert sound.returncode == 0 and "is sound: 4 files" in sound.stderr, sound.stderr

    (tmp_path / "indexes" / "default" / "vectors.faiss").write_bytes(b"not an index")
    assert_user_error(run_cli("status", "--check", cwd=tmp_path), "is damaged")

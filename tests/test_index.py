"""`Index`: incremental updates kept in step across SQLite, FTS5 and FAISS; refusals, rebuilds, status."""

import os
import time
from pathlib import Path

import pytest

from llm2vec_search.errors import L2VError
from llm2vec_search.indexing import Document, Index
from llm2vec_search.indexing.location import LOCK_NAME, resolve_index
from llm2vec_search.indexing.options import SearchOptions
from llm2vec_search.indexing.update import CHECKPOINT_SECONDS, checkpoint_interval
from tests.conftest import tiny_encoder

DOCS = {
    "cats.md": "# Cats\n\nThe cat sat on the mat and looked at the dog.\n",
    "dogs.txt": "A dog is running in the park with a ball.\n",
    "markets/stocks.txt": "Stock markets fell sharply after the announcement.\n",
}


@pytest.fixture(scope="module")
def encoder():
    return tiny_encoder()


@pytest.fixture
def corpus(tmp_path) -> Path:
    root = tmp_path / "corpus"
    for name, text in DOCS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def open_index(tmp_path, encoder, **kwargs) -> Index:
    return Index.open("test", root=tmp_path / "indexes", model=encoder, create=True, **kwargs)


def counts(index: Index) -> dict[str, int]:
    """Files and chunks as SQLite, the FTS5 table and FAISS each see them."""
    files, chunks = index.store.counts()
    return {
        "files": files,
        "chunks": chunks,
        "fts": index.store.fts_count(),
        "faiss": index.vectors.count,
    }


def test_build_then_unchanged_rerun_embeds_nothing(tmp_path, corpus, encoder):
    with open_index(tmp_path, encoder) as index:
        first = index.update([corpus])
        assert (first.files_added, first.files_unchanged) == (3, 0)
        assert first.chunks_added == counts(index)["chunks"] >= 3
        assert counts(index) == {"files": 3, "chunks": 3, "fts": 3, "faiss": 3}
        second = index.update([corpus])
        assert (second.files_added, second.files_changed, second.files_unchanged) == (0, 0, 3)
        assert second.chunks_added == second.chunks_removed == 0
        # Touched but identical: hashed, still unchanged, and the new stat is remembered.
        os.utime(corpus / "dogs.txt", ns=(time.time_ns(), time.time_ns() + 10**9))
        third = index.update([corpus])
        assert (third.files_unchanged, third.chunks_added) == (3, 0)
        stored = index.store.files()[str(corpus / "dogs.txt")]
        assert stored.mtime_ns == (corpus / "dogs.txt").stat().st_mtime_ns


def test_changed_file_is_reembedded_and_deleted_file_removed_everywhere(tmp_path, corpus, encoder):
    with open_index(tmp_path, encoder) as index:
        index.update([corpus])
        old_ids = {
            h.chunk_id
            for h in index.search("cat mat", SearchOptions(mode="bm25", k=10))
            if h.path.endswith("cats.md")
        }
        (corpus / "cats.md").write_text("# Cats\n\nKittens chase laser pointers all afternoon.\n")
        (corpus / "dogs.txt").unlink()
        summary = index.update([corpus])
        assert (summary.files_changed, summary.files_removed, summary.files_unchanged) == (1, 1, 1)
        assert summary.chunks_removed == 2 and summary.chunks_added == 1
        assert counts(index) == {"files": 2, "chunks": 2, "fts": 2, "faiss": 2}
        assert not set(index.vectors.ids().tolist()) & old_ids
        assert index.search("dog running park", SearchOptions(mode="bm25")) == []
        hits = index.search("kittens laser", SearchOptions(mode="bm25"))
        assert [Path(h.path).name for h in hits] == ["cats.md"]


def test_files_outside_the_given_paths_are_kept(tmp_path, corpus, encoder):
    with open_index(tmp_path, encoder) as index:
        index.update([corpus])
        index.update([corpus / "markets"])
        assert counts(index)["files"] == 3


def test_index_name_and_path_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("L2V_SEARCH_INDEX_DIR", str(tmp_path / "env-root"))
    assert resolve_index("docs") == ("docs", tmp_path / "env-root" / "docs")
    assert resolve_index("docs", tmp_path / "given") == ("docs", tmp_path / "given" / "docs")
    assert resolve_index(str(tmp_path / "elsewhere" / "idx")) == ("idx", tmp_path / "elsewhere" / "idx")
    with pytest.raises(L2VError, match="invalid index name"):
        resolve_index("..")


def test_missing_index_is_a_clear_error(tmp_path):
    with pytest.raises(L2VError, match="no index named 'nope'"):
        Index.open("nope", root=tmp_path)


def test_different_model_or_chunking_is_refused(tmp_path, corpus, encoder):
    with open_index(tmp_path, encoder) as index:
        index.update([corpus])
    with pytest.raises(L2VError, match="rerun with --rebuild"):
        Index.open("test", root=tmp_path / "indexes", model=tiny_encoder("llama"))
    with pytest.raises(L2VError, match="rerun with --rebuild"):
        Index.open("test", root=tmp_path / "indexes", model=tiny_encoder(pooling="last_token"))
    with pytest.raises(L2VError, match="chunk-tokens 256, not 64; rerun with --rebuild"):
        Index.open("test", root=tmp_path / "indexes", model=encoder, chunk_tokens=64)


def test_rebuild_swaps_in_only_when_complete(tmp_path, corpus, encoder):
    with open_index(tmp_path, encoder) as index:
        index.update([corpus])
    llama = tiny_encoder("llama")
    rebuilding = Index.open("test", root=tmp_path / "indexes", model=llama, rebuild=True, chunk_tokens=64)
    with Index.open("test", root=tmp_path / "indexes", model=encoder) as old:
        assert old.status().fingerprint == "tiny-gemma3_text"
        assert old.search("stock markets", SearchOptions(mode="bm25"))  # still searchable during the rebuild
    summary = rebuilding.update([corpus])
    rebuilding.close()
    assert summary.files_added == 3
    with Index.open("test", root=tmp_path / "indexes", model=llama) as new:
        status = new.status()
        assert (status.fingerprint, status.chunk_tokens, status.files) == ("tiny-llama", 64, 3)
    leftovers = [p.name for p in (tmp_path / "indexes").iterdir()]
    assert leftovers == ["test"]


def test_abandoned_rebuild_leaves_old_index(tmp_path, corpus, encoder):
    with open_index(tmp_path, encoder) as index:
        index.update([corpus])
    Index.open("test", root=tmp_path / "indexes", model=encoder, rebuild=True).close()
    with Index.open("test", root=tmp_path / "indexes", model=encoder) as index:
        assert counts(index)["chunks"] == 3
    assert [p.name for p in (tmp_path / "indexes").iterdir()] == ["test"]


def test_nothing_to_index_changes_nothing(tmp_path, corpus, encoder):
    empty = tmp_path / "empty"
    empty.mkdir()
    with open_index(tmp_path, encoder) as index, pytest.raises(L2VError, match="nothing to index"):
        index.update([empty])
    assert not (tmp_path / "indexes" / "test").exists()  # a new index that found nothing is not left behind
    with open_index(tmp_path, encoder) as index:
        index.update([corpus])
        with pytest.raises(L2VError, match="nothing to index"):
            index.update([empty])
        assert counts(index)["files"] == 3
    with open_index(tmp_path, encoder) as index, pytest.raises(L2VError, match="not found"):
        index.update([tmp_path / "missing"])


def test_update_documents_by_id(tmp_path, encoder):
    docs = [Document(f"doc{i}", f"Document number {i} talks about topic {i}.", "text") for i in range(5)]
    with open_index(tmp_path, encoder) as index:
        assert index.update_documents(docs).files_added == 5
        assert index.update_documents(docs).files_unchanged == 5
        docs[0] = Document("doc0", "Completely new words about volcanoes.", "text")
        summary = index.update_documents(docs[:4], remove_missing=True)
        assert (summary.files_changed, summary.files_removed, summary.files_unchanged) == (1, 1, 3)
        assert index.search("volcanoes", SearchOptions(mode="bm25"))[0].path == "doc0"
        assert counts(index) == {"files": 4, "chunks": 4, "fts": 4, "faiss": 4}


def test_status(tmp_path, corpus, encoder):
    with open_index(tmp_path, encoder) as index:
        index.update([corpus])
    with Index.open("test", root=tmp_path / "indexes") as index:  # status needs no model
        status = index.status()
        assert index._encoder is None
    assert (status.files, status.chunks, status.dim, status.model) == (3, 3, 32, "tiny-gemma3_text")
    assert status.size_bytes > 0 and status.last_run["files_added"] == 3
    assert status.vector_index == "flat" and status.index_type == "auto"


def test_second_writer_is_refused_while_first_holds_the_lock(tmp_path, corpus, encoder):
    import fcntl

    with open_index(tmp_path, encoder) as index:
        index.update([corpus])
        with open(index.path / LOCK_NAME, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            with pytest.raises(L2VError, match="being updated by another process"):
                index.update([corpus])


def test_reconcile_repairs_an_interrupted_run(tmp_path, corpus, encoder):
    """Simulate the states a kill leaves: pending rows, orphan vectors, committed chunks without vectors."""
    import numpy as np

    from llm2vec_search.indexing.chunking import Chunk

    with open_index(tmp_path, encoder) as index:
        index.update([corpus])
        committed = sorted(index.store.committed_chunk_ids())
        with index.store.transaction():
            index.store.insert_pending_chunks(
                [Chunk("half done", 0, 9, 1, 1, "", path=str(corpus / "dogs.txt"), ordinal=9)]
            )
        index.vectors.add(np.array([10_000]), np.ones((1, 32), dtype=np.float32))  # orphan vector
        index.vectors.remove([committed[0]])  # a committed chunk whose vector never reached disk
        index.vectors.save(index.path / "vectors.faiss")
        summary = index.update([corpus])
        assert summary.files_changed == 1  # the file that lost a vector is re-indexed
        assert counts(index) == {"files": 3, "chunks": 3, "fts": 3, "faiss": 3}
        assert set(index.vectors.ids().tolist()) == index.store.committed_chunk_ids()


def test_index_type_hnsw_handles_removals(tmp_path, corpus, encoder):
    with open_index(tmp_path, encoder, index_type="hnsw") as index:
        index.update([corpus])
        assert index.vectors.kind == "hnsw"
        (corpus / "dogs.txt").unlink()
        index.update([corpus])
        assert counts(index) == {"files": 2, "chunks": 2, "fts": 2, "faiss": 2}
        assert index.status().vector_index == "hnsw"


def test_index_type_change_applies_at_next_update(tmp_path, corpus, encoder):
    with open_index(tmp_path, encoder) as index:
        index.update([corpus])
        assert index.vectors.kind == "flat"
    with Index.open("test", root=tmp_path / "indexes", model=encoder, index_type="hnsw") as index:
        assert index.update([corpus]).chunks_added == 0  # no re-embedding, only a new FAISS structure
        assert index.vectors.kind == "hnsw" and index.status().vector_index == "hnsw"
        text = DOCS["dogs.txt"].strip()
        assert Path(index.search(text, SearchOptions(mode="dense", k=1))[0].path).name == "dogs.txt"


def test_saves_are_spaced_out_when_saving_gets_slow():
    """A large index's FAISS file takes long to rewrite: saves must not dominate the run."""
    assert checkpoint_interval(0.01) == CHECKPOINT_SECONDS
    assert checkpoint_interval(3.0) >= 20 * 3.0

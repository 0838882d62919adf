"""The storage layer on real files: SQLite schema, FTS5 sync, pending/committed chunks, and FAISS kinds."""

import numpy as np
import pytest

from llm2vec_search.errors import L2VError
from llm2vec_search.indexing.chunking import Chunk
from llm2vec_search.indexing.store import FORMAT_VERSION, FileRecord, Store
from llm2vec_search.indexing.vectors import MIN_PQ_TRAIN, VectorIndex, ivf_lists, pq_bytes, wanted_kind


def chunk(path: str, ordinal: int, text: str, heading: str = "") -> Chunk:
    return Chunk(text, 0, len(text), 1, 1, heading, path=path, ordinal=ordinal)


@pytest.fixture
def store(tmp_path):
    store = Store.open(tmp_path / "idx", create=True)
    yield store
    store.close()


def add_file(store: Store, path: str, texts: list[str], commit: bool = True) -> list[int]:
    with store.transaction():
        store.begin_file(path, "text")
        ids = store.insert_pending_chunks([chunk(path, i, t) for i, t in enumerate(texts)])
        if commit:
            store.commit_pending_chunks()
            store.finish_files([FileRecord(path, "abc", 1, 2, "text")])
    return ids


def test_schema_wal_busy_timeout_and_version(store, tmp_path):
    tables = set(store.db.table_names())
    assert {"files", "chunks", "chunks_fts", "info"} <= tables
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    assert store.get_info("format_version") == str(FORMAT_VERSION)
    sql = store.conn.execute("SELECT sql FROM sqlite_master WHERE name = 'chunks_fts'").fetchone()[0]
    assert "porter unicode61 remove_diacritics 2" in sql
    # Reopening does not re-run the migration (it would fail on existing tables).
    Store.open(tmp_path / "idx").close()


def test_newer_format_is_refused(store, tmp_path):
    with store.transaction():
        store.set_info(format_version=FORMAT_VERSION + 1)
    with pytest.raises(L2VError, match="newer l2v-search"):
        Store.open(tmp_path / "idx")


def test_missing_database_is_an_error(tmp_path):
    with pytest.raises(L2VError, match="not an index"):
        Store.open(tmp_path / "nothing")


def test_fts_follows_inserts_and_deletes_with_stemming(store):
    add_file(store, "/a.txt", ["The runner was running quickly", "Café prices rose"])
    assert store.fts_count() == 2
    assert [row.text for row, _ in store.bm25('"runs"', 10)] == ["The runner was running quickly"]
    assert [row.text for row, _ in store.bm25('"cafe"', 10)] == ["Café prices rose"]  # diacritics removed
    with store.transaction():
        removed = store.remove_files(["/a.txt"])
    assert len(removed) == 2
    assert store.fts_count() == 0
    assert store.bm25('"running"', 10) == []


def test_pending_chunks_are_invisible_until_committed(store):
    ids = add_file(store, "/p.txt", ["pending words here"], commit=False)
    assert store.bm25('"pending"', 10) == []
    assert store.chunks_by_id(ids) == {}
    assert store.counts() == (0, 0)
    with store.transaction():
        assert store.delete_pending_chunks() == ids
    assert store.fts_count() == 0


def test_ids_are_never_reused(store):
    first = add_file(store, "/x.txt", ["one", "two"])
    with store.transaction():
        store.remove_files(["/x.txt"])
    second = add_file(store, "/x.txt", ["three"])
    assert min(second) > max(first)


def test_forget_chunks_marks_their_file_for_reindexing(store):
    ids = add_file(store, "/f.txt", ["alpha", "beta"])
    add_file(store, "/g.txt", ["gamma"])
    with store.transaction():
        store.forget_chunks(ids[:1])
    files = store.files()
    assert files["/f.txt"].sha256 is None and files["/g.txt"].sha256 == "abc"
    assert store.counts() == (1, 2)


def test_match_count_counts_the_chunks_holding_a_word(store):
    add_file(store, "/m.txt", ["apple pie", "apple tart", "apple cake", "pear"])
    assert store.match_count('"apple"') == 3
    assert store.match_count('"plum"') == 0


def test_bm25_makes_up_for_pending_chunks_ranked_first(store):
    add_file(store, "/done.txt", ["word and more", "word and other things"])
    add_file(store, "/pending.txt", ["word word word"] * 5, commit=False)
    assert [row.path for row, _ in store.bm25('"word"', 2)] == ["/done.txt", "/done.txt"]


def test_path_filter_in_bm25(store):
    add_file(store, "/docs/a.md", ["shared word"])
    add_file(store, "/src/b.py", ["shared word"])
    rows = store.bm25('"shared"', 10, lambda path: path.endswith(".py"))
    assert [row.path for row, _ in rows] == ["/src/b.py"]


def test_concurrent_reader_is_not_locked_out(store, tmp_path):
    add_file(store, "/a.txt", ["reader sees this"])
    reader = Store.open(tmp_path / "idx")
    store.conn.execute("BEGIN IMMEDIATE")
    store.insert_pending_chunks([chunk("/a.txt", 5, "uncommitted")])
    try:
        assert reader.counts() == (1, 1)  # WAL: reads proceed while the writer holds its lock
    finally:
        store.conn.execute("COMMIT")
        reader.close()


def random_unit(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    data = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return data / np.linalg.norm(data, axis=1, keepdims=True)


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivf", "ivfsq"])
def test_vector_kinds_add_remove_save_load(tmp_path, index_type):
    data = random_unit(2500)
    ids = np.arange(1000, 3500)
    vectors = VectorIndex.create(16)
    vectors.add(ids, data)
    assert vectors.reshape(index_type) == (index_type != "flat")
    assert vectors.kind == index_type
    assert vectors.remove([1000, 1001, 99]) == 2
    path = tmp_path / "vectors.faiss"
    vectors.save(path)
    assert not (tmp_path / "vectors.faiss.tmp").exists()
    loaded = VectorIndex.load(path)
    assert loaded.kind == index_type and loaded.count == 2498
    assert set(loaded.ids().tolist()) == set(range(1002, 3500))
    scores, found = loaded.search(data[10:11], 1)
    assert found[0][0] == 1010 and scores[0][0] == pytest.approx(1.0, abs=0.02)


def test_auto_kind_and_ivf_size():
    assert wanted_kind("auto", 10) == "flat"
    assert wanted_kind("auto", 60_000) == "ivf"
    assert wanted_kind("auto", 2_000_000) == "ivfsq"
    assert wanted_kind("ivfpq", MIN_PQ_TRAIN - 1) == "flat"
    assert wanted_kind("ivf", 100) == "flat"  # too few vectors to train
    assert ivf_lists(1_000_000) == 4000
    with pytest.raises(L2VError, match="unknown index type"):
        wanted_kind("annoy", 10)


def test_ivfpq_stores_a_byte_per_8_dimensions_and_finds_vectors():
    assert (pq_bytes(640), pq_bytes(30), pq_bytes(4)) == (80, 3, 1)
    data = random_unit(MIN_PQ_TRAIN + 500, dim=64)
    vectors = VectorIndex.create(64)
    vectors.add(np.arange(len(data)), data)
    assert vectors.reshape("ivfpq") and vectors.kind == "ivfpq"
    assert vectors.remove([0, 1]) == 2 and vectors.count == len(data) - 2
    _, found = vectors.search(data[10:11], 10)
    assert 10 in found[0].tolist()


def test_empty_vector_index_searches_to_nothing():
    _, ids = VectorIndex.create(8).search(random_unit(1, 8), 5)
    assert ids.tolist() == [[-1]]


def test_corrupt_vectors_file_is_a_user_error(tmp_path):
    path = tmp_path / "vectors.faiss"
    path.write_bytes(b"not faiss")
    with pytest.raises(L2VError, match="cannot read"):
        VectorIndex.load(path)


def test_corrupt_database_is_a_user_error(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "index.db").write_bytes(b"garbage" * 100)
    with pytest.raises(L2VError, match="cannot open"):
        Store.open(folder)

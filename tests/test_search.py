"""Search modes over a real index: dense, BM25 and hybrid (cosine plus BM25 over the IDF mass), path globs,
hostile query text."""

from pathlib import Path

import numpy as np
import pytest

from llm2vec_search.errors import L2VError
from llm2vec_search.indexing import Index
from llm2vec_search.indexing.chunking import Chunk
from llm2vec_search.indexing.options import DEFAULT_DENSE_WEIGHT, SearchOptions
from llm2vec_search.indexing.search import (
    BM25Ranking,
    Hit,
    bm25_ranking,
    english_stopwords,
    fts_query,
    hybrid_scores,
    idf,
    path_matcher,
    query_words,
    rank_hits,
    split_by_match_budget,
)
from llm2vec_search.indexing.store import Store
from tests.conftest import tiny_encoder

DOCS = {
    "guide/install.md": "# Install\n\nRun pip install to set up the package from source.\n",
    "guide/usage.md": "# Usage\n\nQuery the index with a question about volcanoes.\n",
    "src/parser.py": "def parse(tokens):\n    return tokens  # parser for volcano data\n",
    "notes.txt": "Proteins fold into three dimensional structures.\n",
}


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    corpus = root / "corpus"
    for name, text in DOCS.items():
        (corpus / name).parent.mkdir(parents=True, exist_ok=True)
        (corpus / name).write_text(text)
    with Index.open("s", root=root / "indexes", model=tiny_encoder(), create=True) as index:
        index.update([corpus])
        yield index


def names(hits: list[Hit]) -> list[str]:
    return [Path(hit.path).name for hit in hits]


def test_dense_finds_the_chunk_it_was_given(index):
    text = "Proteins fold into three dimensional structures."
    hits = index.search(text, SearchOptions(mode="dense", k=2))
    assert names(hits)[0] == "notes.txt"
    assert hits[0].dense_score == pytest.approx(1.0, abs=1e-4) and hits[0].bm25_score is None
    assert hits[0].score >= hits[1].score
    assert [h.rank for h in hits] == [1, 2]


def test_bm25_finds_keywords_with_stemming(index):
    hits = index.search("volcanoes", SearchOptions(mode="bm25"))
    assert set(names(hits)) == {"usage.md", "parser.py"}  # porter: volcanoes ~ volcano
    assert all(h.bm25_score > 0 and h.dense_score is None for h in hits)


def test_hybrid_fuses_both_lists(index):
    hits = index.search("pip install package", SearchOptions(mode="hybrid", k=4))
    assert names(hits)[0] == "install.md"
    top = hits[0]
    assert top.dense_score is not None and top.bm25_score is not None
    idf_mass = bm25_ranking(index.store, "pip install package", 4).idf_mass
    assert top.score == pytest.approx(DEFAULT_DENSE_WEIGHT * top.dense_score + top.bm25_score / idf_mass)
    assert len(hits) == 4


def test_hit_fields_locate_the_text(index):
    hit = index.search("proteins", SearchOptions(mode="bm25"))[0]
    source = Path(hit.path).read_text()
    assert source[hit.start_char : hit.end_char] == hit.text
    assert hit.start_line == 1 and hit.heading == ""
    assert hit.to_dict()["chunk_id"] == hit.chunk_id
    heading_hit = index.search("volcanoes question", SearchOptions(mode="bm25", path_glob="*.md"))[0]
    assert heading_hit.heading == "Usage"


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_path_glob_filters_every_mode(index, mode):
    hits = index.search("volcano parser install", SearchOptions(mode=mode, k=10, path_glob="guide/*.md"))
    assert hits and set(names(hits)) <= {"install.md", "usage.md"}
    assert names(index.search("volcano", SearchOptions(mode=mode, k=10, path_glob="*.py"))) == ["parser.py"]
    assert index.search("volcano", SearchOptions(mode=mode, path_glob="*.rst")) == []


def test_path_matcher_semantics():
    matches = path_matcher("docs/*.md")
    assert matches("/home/me/project/docs/intro.md")
    assert not matches("/home/me/project/src/intro.md")
    assert path_matcher("*.md")("/a/b/c.md")
    assert not path_matcher("/abs/*.md")("/other/abs/x.md")
    assert path_matcher(None) is None


@pytest.mark.parametrize(
    "text", ['"unbalanced', "AND OR NOT", "NEAR(a b)", "col:value", "a* -b ^c", "(((", "ü-ñ café's"]
)
def test_hostile_text_never_reaches_fts_as_syntax(index, text):
    """No FTS5 error, whatever it would make of the raw text: BM25 ranks only by the words, and hybrid still
    returns a full list (its dense half ranks every chunk)."""
    bm25 = index.search(text, SearchOptions(mode="bm25"))
    assert all(hit.bm25_score is not None and hit.dense_score is None for hit in bm25)
    hybrid = index.search(text, SearchOptions(mode="hybrid"))
    assert [hit.rank for hit in hybrid] == list(range(1, min(10, index.status().chunks) + 1))


def test_fts_query_quotes_words():
    words = query_words('say "hi" OR bye-bye', stopwords=frozenset())
    assert fts_query(words) == '"say" OR "hi" OR "or" OR "bye"'
    assert query_words("!!! ???") == []


def test_query_words_drop_english_stopwords_unless_nothing_else_is_left():
    assert query_words("What is the effect of the drug on the heart?") == ["what", "effect", "drug", "heart"]
    assert query_words("To be, or not to be") == ["to", "be", "or", "not"]
    assert {"the", "of", "and", "is", "not"} <= english_stopwords()


def test_query_words_count_each_word_once_unless_asked_for_repeats():
    assert query_words("Dogs chase cats; do dogs like the cats?") == ["dogs", "chase", "cats", "do", "like"]
    repeated = query_words("Dogs chase cats; do dogs like the cats?", distinct=False)
    assert repeated == ["dogs", "chase", "cats", "do", "dogs", "like", "cats"]


def test_match_budget_keeps_the_rarest_words_that_fit():
    counts = {"common": 90, "middle": 30, "rare": 2, "absent": 0}
    assert split_by_match_budget(counts, 200) == (list(counts), [])
    assert split_by_match_budget(counts, 100) == (["absent", "rare"], ["common", "middle"])
    assert split_by_match_budget(counts, 4) == (["absent"], ["common", "middle", "rare"])


@pytest.fixture
def lexical_store(tmp_path):
    """Chunks where "alpha" is in every one, "beta" in every third, "gamma" in two, "delta" in one."""
    store = Store.open(tmp_path / "lexical", create=True)
    texts = []
    for i in range(30):
        words = ["alpha"] * (1 + i % 4) + (["beta"] if i % 3 == 0 else []) + ["filler"] * (i % 7)
        words += ["gamma"] if i in (4, 9) else []
        words += ["delta"] if i == 9 else []
        texts.append(" ".join(words))
    with store.transaction():
        store.begin_file("/c.txt", "text")
        store.insert_pending_chunks(
            [Chunk(t, 0, len(t), 1, 1, "", path="/c.txt", ordinal=i) for i, t in enumerate(texts)]
        )
        store.commit_pending_chunks()
    yield store
    store.close()


def test_over_the_match_budget_bm25_ranks_rare_word_chunks_by_the_whole_query(lexical_store):
    query = "alpha beta gamma delta"
    exact = {row.id: score for row, score in bm25_ranking(lexical_store, query, 100, match_budget=10**6).hits}
    assert len(exact) == 30
    pruned = bm25_ranking(lexical_store, query, 100, match_budget=12).hits  # delta + gamma fit 12 // 4
    assert {row.text.count("gamma") for row, _ in pruned} == {1}
    assert [row.id for row, _ in pruned] == sorted(exact, key=lambda i: -exact[i])[:2]
    for row, score in pruned:
        assert score == pytest.approx(exact[row.id], rel=1e-9)  # alpha and beta still count in the score


def test_bm25_with_a_path_filter_and_a_match_budget(lexical_store):
    ranking = bm25_ranking(
        lexical_store, "alpha delta", 10, matches=lambda path: path == "/c.txt", match_budget=1
    )
    assert [row.text.count("delta") for row, _ in ranking.hits] == [1]
    nothing = bm25_ranking(lexical_store, "alpha delta", 10, matches=lambda path: False, match_budget=1)
    assert nothing.hits == []


def test_idf_mass_is_what_fts5_scores_a_chunk_of_average_length_holding_each_word_once(tmp_path):
    store = Store.open(tmp_path / "even", create=True)
    texts = ["red fox", "red hen", "blue owl", "grey owl", "grey cat"]  # every chunk two words long
    with store.transaction():
        store.begin_file("/e.txt", "text")
        store.insert_pending_chunks(
            [Chunk(t, 0, len(t), 1, 1, "", path="/e.txt", ordinal=i) for i, t in enumerate(texts)]
        )
        store.commit_pending_chunks()
    ranking = bm25_ranking(store, "red fox", 5)
    assert ranking.idf_mass == pytest.approx(idf(2, 5) + idf(1, 5))
    best, score = ranking.hits[0]
    assert best.text == "red fox" and score == pytest.approx(ranking.idf_mass)
    assert idf(5, 5) == 1e-6  # a word in every chunk: FTS5's floor, not a negative IDF
    store.close()


def test_query_of_only_punctuation_gives_no_bm25_hits(index):
    assert index.search("???", SearchOptions(mode="bm25")) == []


def test_hybrid_scores_add_the_weighted_cosine_and_bm25_over_the_idf_mass():
    dense, bm25 = [(1, 0.9), (2, 0.5), (3, -0.2)], [(3, 12.0), (1, 4.0)]
    scores = hybrid_scores(dense, bm25, dense_weight=0.5, idf_mass=8.0)
    assert scores == pytest.approx({1: 0.45 + 0.5, 2: 0.25, 3: -0.1 + 1.5})
    # a chunk matching a small share of a long query's IDF mass adds little, however high it ranks in BM25
    assert hybrid_scores([], [(4, 2.0)], dense_weight=0.25, idf_mass=40.0) == {4: 0.05}


def test_rank_hits_keeps_each_retrievers_score(index):
    rows = index.store.chunks_by_id(sorted(index.store.committed_chunk_ids()))
    a, b = list(rows.values())[:2]
    hits = rank_hits([(a, 0.9)], BM25Ranking([(b, 3.0), (a, 1.0)], 2.0), k=5, dense_weight=1.5)
    assert [h.chunk_id for h in hits] == [a.id, b.id]
    assert (hits[0].dense_score, hits[0].bm25_score) == (0.9, 1.0)
    assert (hits[1].dense_score, hits[1].bm25_score) == (None, 3.0)


def test_dense_weight_tilts_hybrid_fusion(index):
    rows = index.store.chunks_by_id(sorted(index.store.committed_chunk_ids()))
    a, b = list(rows.values())[:2]
    dense, bm25 = [(a, 0.9), (b, 0.1)], BM25Ranking([(b, 3.0), (a, 1.0)], 2.0)  # each puts the other first
    assert [h.chunk_id for h in rank_hits(dense, bm25, k=2, dense_weight=3.0)] == [a.id, b.id]
    assert [h.chunk_id for h in rank_hits(dense, bm25, k=2, dense_weight=0.5)] == [b.id, a.id]
    with pytest.raises(L2VError, match="dense_weight must be from 0 to 100"):
        index.search("x", SearchOptions(mode="hybrid", dense_weight=-1))


def test_bad_queries_are_user_errors(index):
    with pytest.raises(L2VError, match="empty"):
        index.search("   ")
    with pytest.raises(L2VError, match="unknown search mode"):
        index.search("x", SearchOptions(mode="fuzzy"))
    with pytest.raises(L2VError, match="k must be"):
        index.search("x", SearchOptions(k=0))


def test_search_many_and_precomputed_query_vector(index):
    queries = ["volcano", "proteins fold"]
    batched = index.search_many(queries, SearchOptions(k=3))
    single = [index.search(q, SearchOptions(k=3)) for q in queries]
    assert [[h.chunk_id for h in hits] for hits in batched] == [[h.chunk_id for h in hits] for hits in single]
    vector = index.encoder.encode_queries(["proteins fold"])[0]
    assert index.search("proteins fold", SearchOptions(k=3), query_vector=vector) == single[1]


def test_search_never_writes(index):
    db = index.path / "index.db"
    before = (db.stat().st_mtime_ns, (index.path / "vectors.faiss").stat().st_mtime_ns)
    index.search("volcano", SearchOptions(mode="hybrid"))
    assert before == (db.stat().st_mtime_ns, (index.path / "vectors.faiss").stat().st_mtime_ns)


def test_dense_over_fetches_when_the_filter_is_selective(index):
    one = index.search("anything at all", SearchOptions(mode="dense", k=1, path_glob="notes.txt"))
    assert names(one) == ["notes.txt"]
    assert np.isfinite(one[0].score)

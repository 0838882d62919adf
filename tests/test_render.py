"""Snippets, highlighting and the output formats of `l2v-search query` (no model, no index needed)."""

import json
import os

from rich.console import Console

from llm2vec_search.cli.render import (
    SNIPPET_CHARS,
    display_path,
    hit_details,
    hits_json,
    hits_jsonl,
    hits_plain,
    hits_table,
    location,
    make_snippet,
    query_terms,
    words_match,
)
from llm2vec_search.indexing.chunking import Chunk
from llm2vec_search.indexing.options import DEFAULT_DENSE_WEIGHT, SearchOptions
from llm2vec_search.indexing.search import Hit

FILLER = "Nothing to see in this sentence at all. " * 12


def make_hit(rank: int = 1, text: str = "The cat sat on the mat.", **fields) -> Hit:
    values = dict(
        rank=rank,
        score=0.5 / rank,
        chunk_id=rank,
        path="/data/docs/guide.md",
        start_line=3,
        end_line=7,
        start_char=10,
        end_char=10 + len(text),
        heading="Install > From source",
        text=text,
        dense_score=0.8,
        bm25_score=None,
    )
    values.update(fields)
    chunk_fields = ("text", "start_char", "end_char", "start_line", "end_line", "heading", "path")
    chunk = Chunk(**{name: values.pop(name) for name in chunk_fields}, id=values.pop("chunk_id"))
    return Hit(**values, chunk=chunk)


def test_query_terms_drop_stopwords_short_words_and_repeats():
    assert query_terms("How do I install the Index? index x") == ["install", "index"]


def test_words_match_allows_short_suffixes_only():
    assert words_match("indexing", "index")
    assert words_match("index", "indexes")
    assert words_match("cats", "cat")
    assert not words_match("category", "cat")  # too long a suffix to be the same word
    assert not words_match("at", "ate")  # too short to prefix-match
    assert not words_match("dog", "cat")


def test_snippet_centres_on_the_query_words_and_highlights_them():
    text = FILLER + "To rebuild an index, run the indexing command again.\n\n" + FILLER
    snippet = make_snippet(text, "rebuild index")
    assert len(snippet.plain) <= SNIPPET_CHARS + 2  # two ellipses at most
    assert snippet.plain.startswith("…") and snippet.plain.endswith("…")
    assert "To rebuild an index" in snippet.plain
    assert snippet.highlighted == ["rebuild", "index", "indexing"]


def test_snippet_prefers_the_window_with_the_most_distinct_terms():
    text = "alpha " + FILLER + "alpha " + FILLER + "alpha beta gamma together here. " + FILLER
    snippet = make_snippet(text, "alpha beta gamma")
    assert "alpha beta gamma together" in snippet.plain
    assert set(snippet.highlighted) == {"alpha", "beta", "gamma"}


def test_snippet_collapses_whitespace_and_keeps_whole_words():
    text = "First   line\n\n\tsecond line " + FILLER
    snippet = make_snippet(text, "second")
    assert snippet.plain.startswith("First line second line")
    assert "\n" not in snippet.plain and "  " not in snippet.plain
    words_in_text = set(text.split())
    shown = snippet.plain.strip("…").split()
    assert all(word in words_in_text for word in shown)  # no word cut in the middle


def test_snippet_without_matches_shows_the_start_and_short_text_whole():
    assert make_snippet(FILLER, "zebra").plain.startswith("Nothing to see")
    short = make_snippet("A short chunk.", "chunk")
    assert short.plain == "A short chunk."
    assert short.highlighted == ["chunk"]


def test_rich_snippet_styles_exactly_the_matched_words():
    text = make_snippet("Search the index for cats.", "cat index").rich()
    styled = [text.plain[span.start : span.end] for span in text.spans if span.style]
    assert styled == ["index", "cats"]


def test_location_shows_line_range_and_relative_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    inside = str(tmp_path / "docs" / "a.md")
    assert location(make_hit(path=inside)) == os.path.join("docs", "a.md") + ":3-7"
    assert location(make_hit(path="/elsewhere/b.md", end_line=3)) == "/elsewhere/b.md:3"
    assert display_path("doc-123") == "doc-123"  # an eval doc id is not a file path


def test_plain_output_is_one_block_per_hit():
    hits = [make_hit(1), make_hit(2, text="No heading here.", heading="")]
    blocks = hits_plain(hits, "cat").split("\n\n")
    assert len(blocks) == 2
    assert blocks[0].splitlines() == [
        "1. /data/docs/guide.md:3-7  0.5000",
        "   Install > From source",
        "   The cat sat on the mat.",
    ]
    assert blocks[1].splitlines() == ["2. /data/docs/guide.md:3-7  0.2500", "   No heading here."]


def test_json_and_jsonl_carry_every_hit_field():
    hits = [make_hit(1), make_hit(2)]
    document = json.loads(hits_json("cat", SearchOptions(k=5, mode="dense", path_glob="*.md"), hits))
    assert {key: document[key] for key in ("query", "mode", "k", "path_glob", "dense_weight")} == {
        "query": "cat",
        "mode": "dense",
        "k": 5,
        "path_glob": "*.md",
        "dense_weight": DEFAULT_DENSE_WEIGHT,
    }
    assert document["hits"] == [hit.to_dict() for hit in hits]
    lines = hits_jsonl(hits).splitlines()
    assert [json.loads(line) for line in lines] == [hit.to_dict() for hit in hits]
    assert hits_jsonl([]) == ""


def test_table_has_a_row_per_hit_with_location_heading_and_snippet():
    console = Console(record=True, width=200, color_system=None)
    console.print(hits_table([make_hit(1), make_hit(2, text="A dog in the park.")], "dog"))
    output = console.export_text()
    for header in ("#", "score", "location", "heading", "snippet"):
        assert header in output
    assert "/data/docs/guide.md:3-7" in output
    assert "Install > From source" in output
    assert "A dog in the park." in output
    assert "0.2500" in output


def test_table_treats_brackets_in_text_as_text_not_markup():
    console = Console(record=True, width=160, color_system=None)
    console.print(hits_table([make_hit(text="Use [bold]x[/bold] and [red] literally.")], "literally"))
    assert "[bold]x[/bold]" in console.export_text()


def test_hit_details_give_location_and_the_whole_chunk():
    text = "Line one.\nLine two.\n" + FILLER
    header, body = hit_details(make_hit(3, text=text))
    assert header == f"3. /data/docs/guide.md:3-7  chars 10-{10 + len(text)}  [Install > From source]"
    assert body == text

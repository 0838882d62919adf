"""Chunking by model tokens: exact spans and line numbers, token limits, overlap, boundaries, headings."""

import itertools
from pathlib import Path

import pytest
from conftest import TRAINING_TEXT, build_tokenizer, real_model_cache

from llm2vec_search.errors import L2VError
from llm2vec_search.indexing.chunking import (
    DEFAULT_CHUNK_TOKENS,
    DEFAULT_OVERLAP_TOKENS,
    MAX_HEADING_CHARS,
    SEGMENT_CHARS,
    Chunk,
    chunk_document,
)
from llm2vec_search.indexing.extract import Document, extract

SENTENCES = list(dict.fromkeys(TRAINING_TEXT))
MARKDOWN = """---
title: front matter
---
Intro text before any heading.

# Install

## From source

Clone the repository and build it. 😀 Ünïcode wörds and a verylongwordwithoutanybreaksatall.

```sh
# not a heading, a shell comment
make
```

Setext section
--------------

Text under the setext heading.

# Usage #

Run it.

Notes
=====

Final words.
"""
RST = """=========
 Project
=========

Intro.

Install
=======

Steps here::

    Not a title
    -----------

From source
-----------

Build it.

----------

Usage
=====

Run it.
"""


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def token_count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def check_chunks(doc: Document, chunks: list[Chunk], tokenizer, chunk_tokens: int) -> None:
    """Every chunk is an exact, trimmed, non-empty slice with the right lines and within the token limit,
    and together the chunks cover every non-whitespace character of the document."""
    covered = [False] * len(doc.text)
    for chunk in chunks:
        assert chunk.text == doc.text[chunk.start_char : chunk.end_char]
        assert chunk.text and chunk.text == chunk.text.strip()
        assert chunk.start_line == doc.text[: chunk.start_char].count("\n") + 1
        assert chunk.end_line == doc.text[: chunk.end_char].count("\n") + 1
        assert token_count(tokenizer, chunk.text) <= chunk_tokens
        covered[chunk.start_char : chunk.end_char] = [True] * len(chunk.text)
    missed = "".join(char for char, seen in zip(doc.text, covered, strict=True) if not seen)
    assert not missed.strip()


def prose(paragraphs: int, sentences_per_paragraph: int) -> str:
    sentences = (SENTENCES * (paragraphs * sentences_per_paragraph))[: paragraphs * sentences_per_paragraph]
    groups = [
        sentences[i : i + sentences_per_paragraph] for i in range(0, len(sentences), sentences_per_paragraph)
    ]
    return "\n\n".join(" ".join(group) for group in groups) + "\n"


def test_defaults():
    assert (DEFAULT_CHUNK_TOKENS, DEFAULT_OVERLAP_TOKENS) == (256, 32)


@pytest.mark.parametrize(
    ("chunk_tokens", "overlap_tokens"), [(4, 0), (5, 2), (8, 3), (16, 4), (64, 16), (256, 32)]
)
@pytest.mark.parametrize(("kind", "text"), [("markdown", MARKDOWN), ("rst", RST), ("text", prose(12, 3))])
def test_spans_lines_limits_and_coverage(tokenizer, kind, text, chunk_tokens, overlap_tokens):
    doc = Document("doc", text, kind)
    chunks = chunk_document(doc, tokenizer, chunk_tokens=chunk_tokens, overlap_tokens=overlap_tokens)
    assert chunks
    check_chunks(doc, chunks, tokenizer, chunk_tokens)


def test_a_long_section_is_tokenised_in_bounded_pieces(tokenizer):
    """Memory follows the longest text given to the tokenizer at once, so no call may see the whole file."""
    longest = 0

    def recording(text: str, **kwargs):
        nonlocal longest
        longest = max(longest, len(text))
        return tokenizer(text, **kwargs)

    doc = Document("big.txt", prose(2_000, 3), "text")
    assert len(doc.text) > 2 * SEGMENT_CHARS
    chunks = chunk_document(doc, recording, chunk_tokens=64, overlap_tokens=8)
    assert longest <= SEGMENT_CHARS
    check_chunks(doc, chunks, tokenizer, 64)


def test_a_huge_heading_is_cut_in_every_chunk(tokenizer):
    doc = Document("doc.md", "# " + "word " * 20_000 + "\n\n" + prose(20, 3), "markdown")
    headings = {chunk.heading for chunk in chunk_document(doc, tokenizer, chunk_tokens=64, overlap_tokens=8)}
    assert max(map(len, headings)) == MAX_HEADING_CHARS and all(h.startswith("word word") for h in headings)


def test_multibyte_characters_are_never_split(tokenizer):
    # the tiny byte-level BPE spends several tokens on one emoji: a cut between them would break it
    doc = Document("emoji.txt", "😀😃😄 ünïcødé 文字 " * 30, "text")
    for chunk_tokens in (4, 7, 10):
        chunks = chunk_document(doc, tokenizer, chunk_tokens=chunk_tokens, overlap_tokens=2)
        check_chunks(doc, chunks, tokenizer, chunk_tokens)
        # without overlap no character may appear in two chunks, as it would if a cut fell inside it
        chunks = chunk_document(doc, tokenizer, chunk_tokens=chunk_tokens, overlap_tokens=0)
        check_chunks(doc, chunks, tokenizer, chunk_tokens)
        assert all(b.start_char >= a.end_char for a, b in itertools.pairwise(chunks))


def test_consecutive_chunks_overlap_by_about_the_requested_tokens(tokenizer):
    doc = Document("prose.txt", prose(10, 4), "text")
    chunks = chunk_document(doc, tokenizer, chunk_tokens=40, overlap_tokens=10)
    assert len(chunks) > 5
    for previous, current in itertools.pairwise(chunks):
        shared = doc.text[current.start_char : previous.end_char]
        assert current.start_char < previous.end_char, "no overlap"
        assert 0 < token_count(tokenizer, shared.strip()) <= 12
    without = chunk_document(doc, tokenizer, chunk_tokens=40, overlap_tokens=0)
    assert all(b.start_char >= a.end_char for a, b in itertools.pairwise(without))
    assert len(without) < len(chunks)


def test_windows_end_at_paragraph_breaks_when_one_is_in_reach(tokenizer):
    text = prose(30, 2)
    paragraph_tokens = max(token_count(tokenizer, paragraph) for paragraph in text.split("\n\n"))
    doc = Document("prose.txt", text, "text")
    # the last fifth of each window is longer than a paragraph, so it always holds a paragraph break
    chunks = chunk_document(doc, tokenizer, chunk_tokens=6 * paragraph_tokens, overlap_tokens=8)
    assert len(chunks) > 3
    for chunk in chunks[:-1]:
        assert text[chunk.end_char : chunk.end_char + 2] == "\n\n", chunk.text[-40:]


def test_windows_end_at_sentence_ends_within_a_paragraph(tokenizer):
    text = " ".join(SENTENCES * 6)
    sentence_tokens = max(token_count(tokenizer, sentence) for sentence in SENTENCES)
    doc = Document("prose.txt", text, "text")
    chunks = chunk_document(doc, tokenizer, chunk_tokens=6 * sentence_tokens, overlap_tokens=8)
    assert len(chunks) > 3
    assert all(chunk.text.endswith(".") for chunk in chunks)


def test_code_windows_end_and_overlaps_start_at_line_breaks(tokenizer):
    lines = [f"value_{n} = compute(value_{n - 1}, {n})" for n in range(1, 80)]
    text = "\n".join(lines) + "\n"
    line_tokens = max(token_count(tokenizer, line) for line in lines)
    doc = Document("code.py", text, "code")
    chunks = chunk_document(doc, tokenizer, chunk_tokens=6 * line_tokens, overlap_tokens=2 * line_tokens)
    assert len(chunks) > 3
    assert all(text[chunk.end_char] == "\n" for chunk in chunks)
    assert all(text[chunk.start_char - 1] == "\n" for chunk in chunks[1:])


def test_markdown_sections_and_heading_paths(tokenizer):
    doc = Document("guide.md", MARKDOWN, "markdown")
    chunks = chunk_document(doc, tokenizer, chunk_tokens=256, overlap_tokens=32)
    assert [chunk.heading for chunk in chunks] == [
        "",
        "Install > From source",
        "Install > Setext section",
        "Usage",
        "Notes",
    ]
    # a heading with nothing under it joins the next section; code-fence comments are not headings
    assert chunks[1].text.startswith("# Install\n\n## From source")
    assert "# not a heading" in chunks[1].text
    assert chunks[0].text.startswith("---\ntitle: front matter")
    assert [chunk.start_line for chunk in chunks] == [1, 6, 17, 22, 26]


def test_small_chunks_keep_the_heading_of_their_section(tokenizer):
    doc = Document("guide.md", MARKDOWN, "markdown")
    chunks = chunk_document(doc, tokenizer, chunk_tokens=8, overlap_tokens=2)
    for chunk in chunks:
        if "Final" in chunk.text:
            assert chunk.heading == "Notes"
        if "setext heading" in chunk.text:
            assert chunk.heading == "Install > Setext section"


def test_rst_titles_levels_follow_adornment_order(tokenizer):
    doc = Document("index.rst", RST, "rst")
    chunks = chunk_document(doc, tokenizer, chunk_tokens=256, overlap_tokens=0)
    assert [chunk.heading for chunk in chunks] == [
        "Project",
        "Project > Install",
        "Project > Install > From source",
        "Project > Usage",
    ]
    assert "Not a title" in chunks[1].text  # an indented literal block is not a title
    assert "----------" in chunks[2].text  # a transition is not a title either


def test_html_headings_become_chunk_headings(tokenizer, tmp_path):
    page = tmp_path / "page.html"
    page.write_text(
        "<h1>Manual</h1><p>About it.</p><h2>Setup</h2><p>Install steps.</p><h3>Linux</h3><p>apt get.</p>"
        "<h2>Usage</h2><p>Run it.</p>",
        encoding="utf-8",
    )
    chunks = chunk_document(extract(page), tokenizer)
    assert [chunk.heading for chunk in chunks] == [
        "Manual",
        "Manual > Setup",
        "Manual > Setup > Linux",
        "Manual > Usage",
    ]


def test_plain_text_and_code_have_no_headings(tokenizer):
    text = "# a shell comment, not a title\necho hi\n\nTitle-like line\n===============\n"
    for kind in ("text", "code", "pdf"):
        chunks = chunk_document(Document("x", text, kind), tokenizer)
        assert [chunk.heading for chunk in chunks] == [""]


def test_whitespace_only_document_gives_no_chunks(tokenizer):
    assert chunk_document(Document("blank.md", " \n\n\t\n", "markdown"), tokenizer) == []
    assert chunk_document(Document("empty.txt", "", "text"), tokenizer) == []


def test_section_of_whitespace_between_headings_gives_no_chunk(tokenizer):
    doc = Document("a.md", "\n\n# One\n\nText one.\n\n# Two\n\n   \n", "markdown")
    chunks = chunk_document(doc, tokenizer)
    assert [(chunk.heading, chunk.text) for chunk in chunks] == [
        ("One", "# One\n\nText one."),
        ("Two", "# Two"),
    ]


@pytest.mark.parametrize(("chunk_tokens", "overlap_tokens"), [(0, 0), (10, 10), (10, -1)])
def test_bad_sizes_are_user_errors(tokenizer, chunk_tokens, overlap_tokens):
    with pytest.raises(L2VError):
        chunk_document(Document("x", "text", "text"), tokenizer, chunk_tokens, overlap_tokens)


@pytest.mark.slow
def test_sample_corpus_with_the_real_tokenizer(monkeypatch):
    """The demo corpus stays small (≤ 250 chunks of 256 Gemma tokens); every chunk fits the window. The
    tokenizer comes from the default base model, converted here into the shared cache if no test did yet."""
    from transformers import AutoTokenizer

    from llm2vec_search.encoder.models import DEFAULT_BASE, resolve_weights

    monkeypatch.setenv("L2V_SEARCH_CACHE_DIR", str(real_model_cache()))
    tokenizer = AutoTokenizer.from_pretrained(resolve_weights(DEFAULT_BASE)[0])
    corpus = Path(__file__).resolve().parents[1] / "sample_corpus"
    total = 0
    for path in sorted(corpus.glob("*.md")):
        doc = extract(path)
        chunks = chunk_document(doc, tokenizer)
        check_chunks(doc, chunks, tokenizer, DEFAULT_CHUNK_TOKENS)
        total += len(chunks)
    assert 150 <= total <= 250

"""`read_lines` (behind MCP's `get_document`): a line range of a file's text as the index extracted it,
numbered as search hits are, in memory bounded by what it returns."""

import os
import tracemalloc

from llm2vec_search.indexing.chunking import chunk_document
from llm2vec_search.indexing.discover import path_key, path_of
from llm2vec_search.indexing.extract import extract, read_lines
from tests.conftest import build_tokenizer


def test_a_line_of_a_large_file_costs_the_line_not_the_file(tmp_path):
    path = tmp_path / "big.log"
    line = "x" * 99 + "\n"
    path.write_text(line * 200_000)  # 20 MB
    tracemalloc.start()
    lines = read_lines(path, 1, 1)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert lines.text == line and lines.total == 200_000 and lines.end == 1
    assert peak < 1_000_000, peak  # was the whole text, twice (20 MB read + its lines)


def test_lines_are_numbered_as_search_hits_are_and_cut_to_the_size_asked(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"alpha\r\nbravo\x0cstill bravo\rcharlie\ndelta\n")
    chunks = chunk_document(extract(path), build_tokenizer(), 4, 0)
    assert len(chunks) > 2
    for chunk in chunks:
        assert chunk.text in read_lines(path, chunk.start_line, chunk.end_line).text
    assert read_lines(path).total == 4
    assert read_lines(path, 2, 2).text == "bravo\x0cstill bravo\n"  # a form feed ends no line
    cut = read_lines(path, 1, None, max_chars=8)
    assert cut.text == "alpha\nbr" and cut.truncated and cut.end == 4


def test_an_html_file_is_extracted_once_per_version(tmp_path):
    path = tmp_path / "page.html"
    path.write_text("<h1>Title</h1><p>First para.</p><p>Second para.</p>")
    first = read_lines(path)
    assert first.text == extract(path).text
    path.write_text("<h1>Changed</h1><p>Other words, and more of them.</p>")
    assert "Changed" in read_lines(path).text  # a new version (mtime, size) is read again


def test_a_file_whose_name_is_not_utf8_is_read_by_its_stored_name(tmp_path):
    odd = os.path.join(os.fsencode(tmp_path), b"caf\xe9.txt")
    with open(odd, "w") as handle:
        handle.write("latin-1 name\n")
    key = path_key(os.fsdecode(odd))
    assert key.endswith("caf\\xe9.txt")  # how the index stores it (SQLite takes only UTF-8)
    assert read_lines(path_of(key)).text == "latin-1 name\n"
    literal = tmp_path / "caf\\xe9-literal.txt"  # a name that really holds a backslash is left as it is
    literal.write_text("literal\n")
    assert path_of(str(literal)) == literal

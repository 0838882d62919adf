"""Text extraction from real files of every kind, and the reasons a file is skipped."""

import os
from pathlib import Path

import pytest
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from llm2vec_search.indexing.extract import Document, SkipFile, extract


def write_pdf(path: Path, pages: list[str], user_password: str | None = None) -> Path:
    """A real PDF with one line of Helvetica text per page, optionally encrypted."""
    writer = PdfWriter()
    for text in pages:
        page = writer.add_blank_page(612, 792)
        font = DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
        content = DecodedStreamObject()
        content.set_data(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode())
        page.replace_contents(content)
    if user_password is not None:
        writer.encrypt(user_password=user_password, owner_password="owner-secret")
    with path.open("wb") as file:
        writer.write(file)
    return path


def skip_reason(path: Path) -> str:
    with pytest.raises(SkipFile) as raised:
        extract(path)
    return raised.value.reason


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("notes.txt", "text"),
        ("README", "text"),
        ("data.csv", "text"),
        ("guide.md", "markdown"),
        ("guide.markdown", "markdown"),
        ("index.rst", "rst"),
        ("app.py", "code"),
        ("main.rs", "code"),
        ("config.yaml", "code"),
        ("Makefile", "code"),
    ],
)
def test_text_kinds_by_suffix(tmp_path, name, kind):
    path = tmp_path / name
    path.write_text("line one\nline two\n", encoding="utf-8")
    doc = extract(path)
    assert doc == Document(path=str(path), text="line one\nline two\n", kind=kind)


def test_line_endings_are_normalised_and_a_bom_dropped(tmp_path):
    path = tmp_path / "windows.txt"
    path.write_bytes(b"\xef\xbb\xbfone\r\ntwo\rthree\n")
    assert extract(path).text == "one\ntwo\nthree\n"


def test_utf16_with_bom_is_decoded(tmp_path):
    path = tmp_path / "wide.txt"
    path.write_bytes("héllo wörld\r\n".encode("utf-16"))
    assert extract(path).text == "héllo wörld\n"


def test_html_keeps_visible_text_and_headings_as_lines(tmp_path):
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>Ignored title</title><style>p {color: red}</style></head><body>"
        "<script>var hidden = 1;</script><h1>Main  title</h1><p>First <b>bold</b> paragraph.</p>"
        "<h2>Details</h2><ul><li>one</li><li>two</li></ul><noscript>enable js</noscript></body></html>",
        encoding="utf-8",
    )
    doc = extract(path)
    assert doc.kind == "html"
    lines = [line for line in doc.text.split("\n") if line]
    assert lines == ["# Main title", "First bold paragraph.", "## Details", "one", "two"]


def test_html_title_leads_when_there_is_no_h1(tmp_path):
    path = tmp_path / "page.htm"
    path.write_text("<title>Page name</title><p>Body text.</p>", encoding="utf-8")
    assert extract(path).text == "# Page name\n\nBody text."


def test_pdf_text_per_page_joined_by_blank_lines(tmp_path):
    path = write_pdf(tmp_path / "paper.pdf", ["Hello first page", "Second page text"])
    doc = extract(path)
    assert doc.kind == "pdf"
    assert doc.text == "Hello first page\n\nSecond page text"


def test_pdf_encrypted_with_an_empty_user_password_is_read(tmp_path):
    path = write_pdf(tmp_path / "open.pdf", ["Readable anyway"], user_password="")
    assert extract(path).text == "Readable anyway"


def test_pdf_needing_a_password_or_broken_or_without_text_is_skipped(tmp_path):
    assert skip_reason(write_pdf(tmp_path / "locked.pdf", ["Secret"], user_password="pw")) == "encrypted"
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage without xref")
    assert skip_reason(broken) == "broken"
    assert skip_reason(write_pdf(tmp_path / "blank.pdf", [""])) == "empty"


def test_binary_content_and_binary_suffixes_are_skipped(tmp_path):
    nul = tmp_path / "data.txt"
    nul.write_bytes(b"text then \x00\x01\x02 binary")
    image = tmp_path / "photo.png"
    image.write_text("not really an image", encoding="utf-8")
    assert skip_reason(nul) == "binary"
    assert skip_reason(image) == "binary"


def test_invalid_utf8_is_undecodable(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("café au lait".encode("latin-1"))
    assert skip_reason(path) == "undecodable"


def test_empty_and_whitespace_only_files(tmp_path):
    (tmp_path / "zero.md").write_bytes(b"")
    (tmp_path / "blank.txt").write_text(" \n\t\r\n  ", encoding="utf-8")
    (tmp_path / "blank.html").write_text("<html><script>x()</script><p> </p></html>", encoding="utf-8")
    assert [skip_reason(tmp_path / name) for name in ["zero.md", "blank.txt", "blank.html"]] == ["empty"] * 3


def test_folders_fifos_and_missing_targets_are_unreadable(tmp_path):
    folder = tmp_path / "looks-like-a-file.txt"
    folder.mkdir()
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)  # reading it would block forever: must be refused before opening
    dangling = tmp_path / "dangling.md"
    dangling.symlink_to(tmp_path / "missing.md")
    assert [skip_reason(path) for path in [folder, fifo, dangling]] == ["unreadable"] * 3


def test_skip_file_carries_its_reason():
    error = SkipFile("too large")
    assert error.reason == "too large"
    assert str(error) == "too large"

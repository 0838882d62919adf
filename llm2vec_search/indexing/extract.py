"""Turn one file into plain text with "\\n" line endings, choosing the reader by suffix.

A file that cannot give useful text raises `SkipFile` with a short reason ("binary", "undecodable",
"unreadable", "empty", "encrypted", "broken", "too slow"), which the indexer counts instead of failing the
whole run.
HTML headings come out as Markdown `#` lines so the chunker can use them as chunk headings.
"""

import functools
import io
import logging
import re
import stat
import time
from contextlib import nullcontext
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path


def _words(names: str) -> frozenset[str]:
    return frozenset(names.split())


MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".mdown", ".mkd"})
RST_SUFFIXES = frozenset({".rst", ".rest"})
HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
CODE_SUFFIXES = _words(
    ".py .pyi .js .mjs .cjs .ts .tsx .jsx .java .go .rs .c .h .cc .cpp .cxx .hpp .hh .cs .rb .php .sh .bash"
    " .zsh .fish .ps1 .bat .sql .swift .kt .kts .scala .lua .r .m .mm .pl .pm .dart .ex .exs .erl .hs .ml"
    " .clj .jl .vue .svelte .css .scss .sass .less .xml .toml .yaml .yml .json .jsonc .ini .cfg .conf"
    " .properties .gradle .cmake .mk .proto .graphql .tf .nix .dockerfile"
)
CODE_FILE_NAMES = _words("Makefile Dockerfile CMakeLists.txt Jenkinsfile Gemfile Rakefile Vagrantfile")
BINARY_SUFFIXES = _words(
    ".png .jpg .jpeg .gif .bmp .ico .webp .tif .tiff .psd .zip .gz .tgz .bz2 .xz .7z .rar .tar .zst .exe .dll"
    " .so .dylib .o .a .lib .class .jar .pyc .pyo .whl .egg .bin .dat .db .sqlite .sqlite3 .parquet .npy .npz"
    " .pt .pth .ckpt .safetensors .gguf .onnx .faiss .mp3 .mp4 .m4a .wav .flac .ogg .avi .mov .mkv .webm"
    " .woff .woff2 .ttf .otf .eot .doc .docx .xls .xlsx .ppt .pptx .odt .iso .dmg"
)
BINARY_SNIFF_BYTES = 8192
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
HTML_DROPPED_TAGS = ("script", "style", "noscript", "template", "svg", "head", "title")
HTML_BLOCK_TAGS = _words(
    "p div section article main aside header footer nav li ul ol dl dt dd tr table thead tbody blockquote"
    " pre figure figcaption form fieldset address details summary hr br"
)
HTML_HEADING_TAGS = ("h1", "h2", "h3", "h4", "h5", "h6")
BLANK_LINE_RUNS = re.compile(r"\n{3,}")
HTML_FEED_CHARS = 1 << 16
# No single file may hold up a run longer than this: HTML and PDF extraction give up ("too slow").
EXTRACT_SECONDS = 60.0


@dataclass
class Document:
    """One file's text. `path` identifies it in the index (a file path, or a document id for BEIR corpora)."""

    path: str
    text: str
    kind: str  # text, markdown, rst, html, code, pdf


class SkipFile(Exception):
    """This file gives no text to index; `reason` is a short label the indexer counts."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def kind_of(path: Path) -> str | None:
    """The reader a file gets, by its name; None for a known binary format."""
    suffix = path.suffix.lower()
    if suffix in BINARY_SUFFIXES:
        return None
    if suffix == ".pdf":
        return "pdf"
    if suffix in MARKDOWN_SUFFIXES:
        return "markdown"
    if suffix in RST_SUFFIXES:
        return "rst"
    if suffix in HTML_SUFFIXES:
        return "html"
    if suffix in CODE_SUFFIXES or path.name in CODE_FILE_NAMES:
        return "code"
    return "text"


def extract(path: Path, time_limit: float = EXTRACT_SECONDS) -> Document:
    """The file's text; raises SkipFile when there is none worth indexing, or when parsing it takes longer
    than `time_limit` seconds."""
    kind = kind_of(path)
    if kind is None:
        raise SkipFile("binary")
    _require_regular_file(path)
    deadline = time.monotonic() + time_limit
    text = _read_pdf(path, deadline) if kind == "pdf" else _decode(_read_bytes(path))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if kind == "html":
        text = _html_to_text(text, deadline)
    if not text.strip():
        raise SkipFile("empty")
    return Document(path=str(path), text=text, kind=kind)


@dataclass
class Lines:
    """Lines `start`..`end` of a document (1-based, inclusive), cut to a size; see `read_lines`."""

    text: str
    start: int
    end: int
    total: int
    truncated: bool


def read_lines(path: Path, start: int = 1, end: int | None = None, max_chars: int = 100_000) -> Lines:
    """Lines `start`..`end` (default: the last) of the file's text as `extract` gives it, split at "\n" as
    search hits count lines, at most `max_chars` characters of them. Plain text is streamed, so a huge file
    costs the memory of the lines returned; a PDF's or HTML file's text is extracted once per file version."""
    info = path.stat()
    with open(path, "rb") as handle:
        utf16 = handle.read(2) in UTF16_BOMS
    source = (
        nullcontext(_extracted_lines(path, info.st_mtime_ns, info.st_size))
        if kind_of(path) in ("pdf", "html") or utf16
        # universal newlines: "\r\n" and "\r" end lines, as in `extract`
        else open(path, encoding="utf-8-sig", newline=None)  # noqa: SIM115  (closed by `with`)
    )
    kept: list[str] = []
    size = total = 0
    with source as lines:
        try:
            for total, line in enumerate(lines, start=1):
                if start <= total and (end is None or total <= end) and size <= max_chars:
                    kept.append(line)
                    size += len(line)
        except UnicodeDecodeError:
            raise SkipFile("undecodable") from None
    text = "".join(kept)
    return Lines(text[:max_chars], start, min(end or total, total), total, len(text) > max_chars)


@functools.lru_cache(maxsize=4)
def _extracted_lines(path: Path, mtime_ns: int, size: int) -> tuple[str, ...]:
    """A file's extracted text in lines, for one version of it (its mtime and size are in the cache's key)."""
    return tuple(io.StringIO(extract(path).text))


def _require_regular_file(path: Path) -> None:
    """A folder, FIFO or device is no document (and reading a FIFO would block forever)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        raise SkipFile("unreadable") from None
    if not stat.S_ISREG(mode):
        raise SkipFile("unreadable")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        raise SkipFile("unreadable") from None


def _decode(data: bytes) -> str:
    """UTF-8 (a BOM is dropped) or BOM-marked UTF-16; NUL bytes without a UTF-16 BOM mean binary."""
    if not data:
        raise SkipFile("empty")
    try:
        if data.startswith(UTF16_BOMS):
            return data.decode("utf-16")
        if b"\x00" in data[:BINARY_SNIFF_BYTES]:
            raise SkipFile("binary")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SkipFile("undecodable") from None


def _read_pdf(path: Path, deadline: float) -> str:
    """Text of each page, pages separated by a blank line. pypdf raises many exception types on damaged
    files, so any failure while parsing this one file means "broken"."""
    import pypdf

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # damaged files log warnings for every page
    try:
        reader = pypdf.PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise SkipFile("encrypted")
        pages = []
        for page in reader.pages:
            pages.append(page.extract_text() or "")
            _check_deadline(deadline)
    except SkipFile:
        raise
    except OSError:
        raise SkipFile("unreadable") from None
    except Exception:
        raise SkipFile("broken") from None
    return "\n\n".join(_tidy_lines(page) for page in pages if page.strip())


class _HtmlText(HTMLParser):
    """Visible text of an HTML page in one streaming pass, so time grows linearly with the markup however
    deeply it nests: text inside dropped tags is skipped, block tags put line breaks around their content,
    headings are collected and written as `#` lines, and the first <title> is kept aside."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.dropped: list[str] = []  # open dropped tags, innermost last
        self.heading: tuple[int, list[str]] | None = None
        self.title: list[str] = []
        self.title_done = False
        self.has_h1 = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "body":
            self.dropped.clear()  # a <head> left open ends where the body begins
        if tag in HTML_DROPPED_TAGS:
            self.dropped.append(tag)
        elif self.dropped:
            return
        elif tag in HTML_HEADING_TAGS:
            self._end_heading()
            self.heading = (int(tag[1]), [])
            self.has_h1 = self.has_h1 or tag == "h1"
        elif tag in HTML_BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        self.title_done = self.title_done or tag == "title"
        if tag in self.dropped:
            del self.dropped[len(self.dropped) - 1 - self.dropped[::-1].index(tag) :]
        elif self.dropped:
            return
        elif tag in HTML_HEADING_TAGS:
            self._end_heading()
        elif tag in HTML_BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self.dropped:
            if self.dropped[-1] == "title" and not self.title_done:
                self.title.append(data)
            return
        (self.heading[1] if self.heading else self.parts).append(data)

    def _end_heading(self) -> None:
        if self.heading:
            level, words = self.heading
            self.parts.append(f"\n\n{'#' * level} {' '.join(''.join(words).split())}\n\n")
            self.heading = None


def _html_to_text(markup: str, deadline: float) -> str:
    """Visible text, one block per line, headings as `#` lines; the <title> leads when there is no <h1>."""
    parser = _HtmlText()
    for start in range(0, len(markup), HTML_FEED_CHARS):
        parser.feed(markup[start : start + HTML_FEED_CHARS])
        _check_deadline(deadline)
    parser.close()
    parser._end_heading()
    text = _tidy_lines("".join(parser.parts))
    title = " ".join("".join(parser.title).split())
    if title and not parser.has_h1:
        text = f"# {title}\n\n{text}"
    return text


def _check_deadline(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise SkipFile("too slow")


def _tidy_lines(text: str) -> str:
    """Collapse runs of spaces inside lines and of blank lines between them."""
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return BLANK_LINE_RUNS.sub("\n\n", "\n".join(lines)).strip()

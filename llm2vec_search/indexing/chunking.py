"""Cut a document into overlapping windows of model tokens, each an exact slice of the document's text.

Markdown (and HTML, whose headings extraction writes as `#` lines) and reStructuredText are first split at
their headings, so a chunk never straddles two sections and carries its heading path ("Install > From
source"). Inside a section each window is one tokenisation's offsets; a window ends at the best paragraph,
line, sentence or word boundary in its last fifth, so chunks rarely cut a sentence in half.
"""

import bisect
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from ..errors import L2VError
from .extract import Document

DEFAULT_CHUNK_TOKENS = 256
DEFAULT_OVERLAP_TOKENS = 32
BOUNDARY_ZONE = 0.2  # share of a window, at its end, searched for a good place to cut
HEADING_SEPARATOR = " > "
# Every chunk stores its heading path; a longer one is cut (a 100 KB "heading" was copied into every chunk).
MAX_HEADING_CHARS = 300
# A section is tokenised in pieces of at most this many characters, cut at a line break where there is one,
# so memory stays bounded on a 10 MB file (the tokenizer's offsets for the whole file took 1.6 GB).
SEGMENT_CHARS = 100_000
MARKDOWN_LIKE_KINDS = frozenset({"markdown", "html"})

ATX_HEADING = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT_UNDERLINE = re.compile(r" {0,3}(=+|-+)[ \t]*$")
CODE_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
NEWLINE = re.compile("\n")
SENTENCE_END = re.compile(r"[.!?][\"')\]”’»]?$")  # a sentence mark, maybe closed by a quote or bracket
RST_ADORNMENT = re.compile(r"([!-/:-@\[-`{-~])\1+[ \t]*$")


@dataclass
class Chunk:
    """A slice of a document: `text == document.text[start_char:end_char]`; lines are 1-based, inclusive.

    The one chunk model from chunker to hit: once stored it also has its `id` (the FAISS id), its file's
    `path` and its `ordinal` in that file."""

    text: str
    start_char: int
    end_char: int
    start_line: int
    end_line: int
    heading: str
    id: int = 0
    path: str = ""
    ordinal: int = 0


@dataclass(frozen=True)
class _Heading:
    start: int  # first character of the heading's first line (an overline, for reST)
    body_start: int  # first character after the heading's last line
    level: int
    title: str


@dataclass(frozen=True)
class _Section:
    start: int
    end: int
    heading: str


def chunk_document(
    doc: Document,
    tokenizer,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
) -> list[Chunk]:
    """Chunks of at most `chunk_tokens` tokens (as `tokenizer` counts them without special tokens),
    consecutive chunks of a section sharing about `overlap_tokens` tokens; whitespace-only ones dropped."""
    if chunk_tokens < 1:
        raise L2VError(f"chunk size must be at least 1 token (got {chunk_tokens})")
    if not 0 <= overlap_tokens < chunk_tokens:
        raise L2VError(f"chunk overlap must be from 0 to {chunk_tokens - 1} tokens (got {overlap_tokens})")
    text = doc.text
    newlines = [start - 1 for start in _line_starts(text)[1:]]
    chunks = []
    for section, (offset, limit) in _segments(text, _split_sections(doc)):
        piece = text[offset:limit]
        for start, end in _windows(piece, tokenizer, chunk_tokens, overlap_tokens):
            start, end = _strip_span(piece, start, end)
            if start < end:
                start, end = start + offset, end + offset
                chunks.append(
                    Chunk(
                        text=text[start:end],
                        start_char=start,
                        end_char=end,
                        start_line=bisect.bisect_left(newlines, start) + 1,
                        end_line=bisect.bisect_left(newlines, end - 1) + 1,
                        heading=section.heading,
                    )
                )
    return chunks


def _segments(text: str, sections: Sequence[_Section]) -> Iterator[tuple[_Section, tuple[int, int]]]:
    """Each section's spans of at most SEGMENT_CHARS characters, each ending at the last line break of its
    second half when there is one (chunks do not overlap across these cuts)."""
    for section in sections:
        start = section.start
        while section.end - start > SEGMENT_CHARS:
            cut = (
                text.rfind("\n", start + SEGMENT_CHARS // 2, start + SEGMENT_CHARS) + 1
                or start + SEGMENT_CHARS
            )
            yield section, (start, cut)
            start = cut
        yield section, (start, section.end)


def _heading_path(titles: Iterable[str]) -> str:
    path = HEADING_SEPARATOR.join(title for title in titles if title)
    return path if len(path) <= MAX_HEADING_CHARS else path[: MAX_HEADING_CHARS - 1] + "…"


def _split_sections(doc: Document) -> list[_Section]:
    """The document cut at its headings (one section for kinds without them)."""
    if doc.kind in MARKDOWN_LIKE_KINDS:
        headings = _markdown_headings(doc.text)
    elif doc.kind == "rst":
        headings = _rst_headings(doc.text)
    else:
        headings = []
    return _sections(doc.text, headings)


def _line_starts(text: str) -> list[int]:
    return [0, *(match.end() for match in NEWLINE.finditer(text))]


def _markdown_headings(text: str) -> list[_Heading]:
    """ATX (`## Title`) and setext (Title + `===`/`---`) headings outside fenced code and front matter."""
    lines = text.split("\n")
    starts = _line_starts(text)
    headings: list[_Heading] = []
    fence = ""
    first = _front_matter_end(lines)
    for number in range(first, len(lines)):
        line = lines[number]
        opener = CODE_FENCE.match(line)
        if fence:
            if opener and opener.group(1)[0] == fence[0] and len(opener.group(1)) >= len(fence):
                fence = ""
            continue
        if opener:
            fence = opener.group(1)
            continue
        body_start = starts[number + 1] if number + 1 < len(lines) else len(text)
        atx = ATX_HEADING.match(line)
        if atx:
            headings.append(
                _Heading(starts[number], body_start, len(atx.group(1)), (atx.group(2) or "").strip())
            )
            continue
        underline = SETEXT_UNDERLINE.match(line)
        if underline and number > first and _can_be_setext_title(lines[number - 1]):
            if headings and headings[-1].body_start == starts[number]:
                continue  # the line above is itself a heading: this is a rule, not an underline
            level = 1 if underline.group(1)[0] == "=" else 2
            headings.append(_Heading(starts[number - 1], body_start, level, lines[number - 1].strip()))
    return headings


def _front_matter_end(lines: Sequence[str]) -> int:
    """Index of the first line after a YAML front matter block (`---` ... `---`), or 0 when there is none."""
    if lines and lines[0].strip() == "---":
        for number in range(1, len(lines)):
            if lines[number].strip() in ("---", "..."):
                return number + 1
    return 0


def _can_be_setext_title(line: str) -> bool:
    return bool(line.strip()) and not line.startswith(("    ", "\t")) and not CODE_FENCE.match(line)


def _rst_headings(text: str) -> list[_Heading]:
    """Titles underlined (optionally also overlined) with one repeated punctuation character, after a blank
    line; levels follow the order in which adornment styles first appear, as in docutils."""
    lines = text.split("\n")
    starts = _line_starts(text)
    styles: list[tuple[str, bool]] = []
    headings: list[_Heading] = []
    for number in range(1, len(lines)):
        underline = RST_ADORNMENT.match(lines[number])
        title = lines[number - 1]
        if not underline or not title.strip() or RST_ADORNMENT.match(title):
            continue
        has_overline = number >= 2 and lines[number - 2].rstrip() == lines[number].rstrip()
        first_line = number - 2 if has_overline else number - 1
        if title[0].isspace() and not has_overline:
            continue
        if len(lines[number].rstrip()) < len(title.strip()):
            continue
        if first_line > 0 and lines[first_line - 1].strip():
            continue  # a title follows a blank line; otherwise this is a paragraph's last line
        style = (underline.group(1), has_overline)
        if style not in styles:
            styles.append(style)
        body_start = starts[number + 1] if number + 1 < len(lines) else len(text)
        headings.append(_Heading(starts[first_line], body_start, styles.index(style) + 1, title.strip()))
    return headings


def _sections(text: str, headings: Sequence[_Heading]) -> list[_Section]:
    """Sections from heading to heading, each named by its heading path. A heading with nothing under it
    before the next heading joins the next section, so no chunk is a bare title."""
    sections = []
    if not headings or headings[0].start > 0:
        sections.append(_Section(0, headings[0].start if headings else len(text), ""))
    path: list[tuple[int, str]] = []
    pending_start = None
    for index, heading in enumerate(headings):
        while path and path[-1][0] >= heading.level:
            path.pop()
        path.append((heading.level, heading.title))
        end = headings[index + 1].start if index + 1 < len(headings) else len(text)
        start = heading.start if pending_start is None else pending_start
        if text[heading.body_start : end].strip() or index + 1 == len(headings):
            sections.append(_Section(start, end, _heading_path(title for _, title in path)))
            pending_start = None
        else:
            pending_start = start
    return sections


def _windows(piece: str, tokenizer, chunk_tokens: int, overlap_tokens: int) -> Iterator[tuple[int, int]]:
    """Character spans of token windows over `piece`, tokenised once; each span re-counted and shortened
    in the rare case its own tokenisation (without the neighbouring context) comes out longer."""
    offsets = tokenizer(piece, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    count = len(offsets)
    content_end = len(piece.rstrip())
    zone = max(1, int(chunk_tokens * BOUNDARY_ZONE))
    first = 0
    while first < count:
        last = min(first + chunk_tokens, count)
        if last < count:
            last = _best_cut(piece, offsets, first, last, zone)
        while last - first > 1 and _token_count(tokenizer, piece, offsets, first, last) > chunk_tokens:
            last = _previous_clean_cut(offsets, first, last)
        yield offsets[first][0], offsets[last - 1][1]
        if last >= count or offsets[last][0] >= content_end:
            return  # nothing but whitespace left: another window would repeat the overlap only
        first = _next_start(piece, offsets, first, last, overlap_tokens)


def _token_count(tokenizer, piece: str, offsets, first: int, last: int) -> int:
    start, end = _strip_span(piece, offsets[first][0], offsets[last - 1][1])
    return len(tokenizer(piece[start:end], add_special_tokens=False)["input_ids"])


def _is_clean_cut(offsets, cut: int) -> bool:
    """A cut between tokens that does not split one character's bytes over two tokens."""
    return offsets[cut][0] >= offsets[cut - 1][1]


def _previous_clean_cut(offsets, first: int, last: int) -> int:
    for cut in range(last - 1, first, -1):
        if _is_clean_cut(offsets, cut):
            return cut
    return first + 1


def _best_cut(piece: str, offsets, first: int, last: int, zone: int) -> int:
    """The cut in the window's last `zone` tokens at the strongest boundary, the latest one on ties."""
    best, best_score = None, -1
    for cut in range(max(first + 1, last - zone), last + 1):
        if _is_clean_cut(offsets, cut):
            score = _boundary_score(piece, offsets[cut - 1][1], offsets[cut][0])
            if score >= best_score:
                best, best_score = cut, score
    return best if best is not None else _previous_clean_cut(offsets, first, last)


def _boundary_score(piece: str, end: int, next_start: int) -> int:
    """4 paragraph break, 3 line break, 2 sentence end, 1 between words, 0 inside a word."""
    left, right = end, next_start
    while left > 0 and piece[left - 1].isspace():
        left -= 1
    while right < len(piece) and piece[right].isspace():
        right += 1
    gap = piece[left:right]
    if not gap:
        return 0
    newlines = gap.count("\n")
    if newlines:
        return 4 if newlines > 1 else 3
    return 2 if SENTENCE_END.search(piece, max(0, left - 2), left) else 1


def _next_start(piece: str, offsets, first: int, last: int, overlap_tokens: int) -> int:
    """The next window's first token, at most `overlap_tokens` back: the strongest boundary there (as for
    cuts), the earliest on ties, so the overlap opens at a paragraph, line, sentence or word where it can.
    It must reach back past the window's trailing whitespace, or there would be no overlap at all."""
    earliest = max(last - overlap_tokens, first + 1)
    _, content_end = _strip_span(piece, offsets[earliest][0], offsets[last - 1][1])
    best, best_score = earliest, 0
    for token in range(earliest, last):
        if offsets[token][0] >= content_end:
            break
        if _is_clean_cut(offsets, token):
            score = _boundary_score(piece, offsets[token - 1][1], offsets[token][0])
            if score > best_score:
                best, best_score = token, score
    return best


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end

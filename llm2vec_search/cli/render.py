"""How search hits look: a Rich table on a terminal, plain text blocks in a pipe, JSON for programs.

The snippet is the part of a chunk where the query's words cluster, so a reader sees why a hit matched; the
words are found by a loose prefix match (index ~ indexes ~ indexing), as BM25's stemmer finds them too.
"""

import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from rich.table import Table
from rich.text import Text

from ..indexing.options import SearchOptions
from ..indexing.search import Hit
from .app import console

SNIPPET_CHARS = 220
# Words too common to be worth highlighting.
_STOPWORD_TEXT = (
    "a an and are as at be by do for from has have how i in is it its of on or that the this to was what "
    "when where which who why with"
)
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
# Two words match when the shorter (at least this long) starts the longer, which is at most MAX_SUFFIX longer.
MIN_PREFIX = 3
MAX_SUFFIX = 3
HIGHLIGHT_STYLE = "bold yellow"
_WORD = re.compile(r"\w+", re.UNICODE)
_SPACE = re.compile(r"\s+")
# Characters that would let a file name start a new line or move the cursor when printed.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def query_terms(query: str) -> list[str]:
    """The query's distinct lowercase words, without stopwords and one-letter words."""
    words = (w.lower() for w in _WORD.findall(query))
    return list(dict.fromkeys(w for w in words if len(w) > 1 and w not in STOPWORDS))


def words_match(word: str, term: str) -> bool:
    """Loose stemming: equal, or one is a short-suffixed form of the other (cat/cats, index/indexing)."""
    if word == term:
        return True
    short, long = sorted((word, term), key=len)
    return len(short) >= MIN_PREFIX and len(long) - len(short) <= MAX_SUFFIX and long.startswith(short)


def term_spans(text: str, terms: Sequence[str]) -> list[tuple[int, int, str]]:
    """(start, end, term) of each word in `text` that matches a query term, in order."""
    spans = []
    for match in _WORD.finditer(text):
        word = match.group().lower()
        term = next((t for t in terms if words_match(word, t)), None)
        if term is not None:
            spans.append((match.start(), match.end(), term))
    return spans


@dataclass
class Snippet:
    """Consecutive pieces of a snippet, each flagged as a highlighted query word or not."""

    parts: list[tuple[str, bool]]

    @property
    def plain(self) -> str:
        return "".join(text for text, _ in self.parts)

    def rich(self, style: str = HIGHLIGHT_STYLE) -> Text:
        text = Text()
        for piece, highlighted in self.parts:
            text.append(piece, style=style if highlighted else None)
        return text

    @property
    def highlighted(self) -> list[str]:
        return [text for text, flag in self.parts if flag]


def _best_window(text: str, spans: list[tuple[int, int, str]], width: int) -> int:
    """Start of the `width`-char window holding the most distinct terms (then the most matches)."""
    if not spans or len(text) <= width:
        return 0
    lead = width // 5  # a little context before the first matched word
    best_start, best_score = 0, (-1, -1)
    for anchor, _, _ in spans:
        start = max(0, min(anchor - lead, len(text) - width))
        inside = [term for s, e, term in spans if s >= start and e <= start + width]
        score = (len(set(inside)), len(inside))
        if score > best_score:
            best_start, best_score = start, score
    return best_start


def _snap_to_words(text: str, start: int, end: int) -> tuple[int, int]:
    """Move a cut that falls inside a word to that word's edge, so no word is shown in part."""
    if 0 < start < len(text) and text[start - 1].isalnum() and text[start].isalnum():
        space = _SPACE.search(text, start, end)
        start = space.end() if space else start
    if 0 < end < len(text) and text[end - 1].isalnum() and text[end].isalnum():
        spaces = list(_SPACE.finditer(text, start, end))
        end = spaces[-1].start() if spaces else end
    return start, end


def make_snippet(text: str, query: str, width: int = SNIPPET_CHARS) -> Snippet:
    """Up to `width` chars of `text` around the query's words, whitespace collapsed, "…" where cut."""
    spans = term_spans(text, query_terms(query))
    start = _best_window(text, spans, width)
    start, end = _snap_to_words(text, start, min(len(text), start + width))
    parts: list[tuple[str, bool]] = []
    cursor = start
    for s, e, _ in spans:
        if s < start or e > end:
            continue
        parts.append((text[cursor:s], False))
        parts.append((text[s:e], True))
        cursor = e
    parts.append((text[cursor:end], False))
    parts = [(_SPACE.sub(" ", piece) if not flag else piece, flag) for piece, flag in parts if piece]
    if parts and not parts[0][1]:
        parts[0] = (parts[0][0].lstrip(), False)
    if parts and not parts[-1][1]:
        parts[-1] = (parts[-1][0].rstrip(), False)
    if start > 0:
        parts.insert(0, ("…", False))
    if end < len(text):
        parts.append(("…", False))
    return Snippet([p for p in parts if p[0]])


def display_path(path: str) -> str:
    """A path under the current folder is shown relative to it; anything else (doc ids too) as stored.
    Control characters are shown escaped (`\\n`), so a file name cannot forge output lines."""
    if os.path.isabs(path):
        relative = os.path.relpath(path)
        if not relative.startswith(".."):
            path = relative
    return _CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), path)


def location(hit: Hit) -> str:
    """`path:start-end` (1-based lines), or `path:line` for a one-line chunk."""
    lines = str(hit.start_line) if hit.start_line == hit.end_line else f"{hit.start_line}-{hit.end_line}"
    return f"{display_path(hit.path)}:{lines}"


def format_score(score: float) -> str:
    return f"{score:.4f}"


def hits_table(hits: Sequence[Hit], query: str) -> Table:
    table = Table(show_lines=True, expand=True)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("location", overflow="fold", ratio=2)
    table.add_column("heading", ratio=1)
    table.add_column("snippet", ratio=4, min_width=30)
    for hit in hits:
        table.add_row(
            str(hit.rank),
            format_score(hit.score),
            Text(location(hit), style="cyan"),
            Text(hit.heading),
            make_snippet(hit.text, query).rich(),
        )
    return table


def hits_plain(hits: Sequence[Hit], query: str) -> str:
    """One block per hit: `rank. path:start-end  score`, then the heading (if any) and the snippet."""
    blocks = []
    for hit in hits:
        lines = [f"{hit.rank}. {location(hit)}  {format_score(hit.score)}"]
        if hit.heading:
            lines.append(f"   {hit.heading}")
        lines.append(f"   {make_snippet(hit.text, query).plain}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def hits_json(query: str, options: SearchOptions, hits: Sequence[Hit]) -> str:
    """The search as asked (query and every option) and its hits, as one JSON object."""
    document = {"query": query, **asdict(options), "hits": [h.to_dict() for h in hits]}
    return json.dumps(document, ensure_ascii=False)


def hits_jsonl(hits: Sequence[Hit]) -> str:
    return "\n".join(json.dumps(h.to_dict(), ensure_ascii=False) for h in hits)


def hit_details(hit: Hit) -> tuple[str, str]:
    """(header, body) for showing one hit's whole chunk: where it is, then its full text."""
    heading = f"  [{hit.heading}]" if hit.heading else ""
    header = f"{hit.rank}. {location(hit)}  chars {hit.start_char}-{hit.end_char}{heading}"
    return header, hit.text


def print_hits(hits: Sequence[Hit], query: str) -> None:
    """A table on a terminal; plain text blocks when stdout is a pipe or a file; nothing for no hits."""
    if not hits:
        return
    if console.is_terminal:
        console.print(hits_table(hits, query))
    else:
        print(hits_plain(hits, query))

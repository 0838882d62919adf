"""Peak memory of chunking one large file with the default model's tokenizer, and what a huge heading costs.

A ~9.8 MB Markdown file (SciFact abstracts, just under the 10 MB file cap) is chunked in a fresh interpreter
per row, so each row's peak RSS (`ru_maxrss`) is its own:
- `tokenizer only`: the tokenizer loaded, nothing chunked (the floor);
- `whole file at once`: the tokenizer run over the whole text with offsets, as chunking did before it cut
  sections into pieces of `SEGMENT_CHARS`;
- `chunk_document (now)`: what indexing does.

Then a file whose first line is a 100 KB Markdown heading over ~450 chunks of text: the heading characters
stored across its chunks (every chunk keeps its heading path, cut at `MAX_HEADING_CHARS`).

    python benchmarks/chunk_memory.py
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "data" / "scifact"
FILE_BYTES = 9_800_000
HEADING_CHARS = 100_000
ROWS = {
    "tokenizer only": "pass",
    "whole file at once": "tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)",
    "chunk_document (now)": "chunks = chunk_document(Document('big.md', text, 'markdown'), tokenizer)",
}


def tokenizer():
    from transformers import AutoTokenizer

    from llm2vec_search.encoder.models import resolve_weights

    return AutoTokenizer.from_pretrained(resolve_weights("gemma3-270m")[0])


def abstracts(size: int) -> str:
    """SciFact abstracts as Markdown paragraphs, repeated up to `size` characters."""
    with (SCIFACT / "corpus.jsonl").open() as handle:
        texts = [json.loads(line)["text"] for line in handle]
    parts, total = [], 0
    while total < size:
        for text in texts:
            parts.append(text)
            total += len(text) + 2
            if total >= size:
                break
    return "\n\n".join(parts)


def peak_mb(statement: str, text_file: Path) -> float:
    """Peak RSS in MB of a fresh interpreter that loads the tokenizer and the text, then runs `statement`."""
    code = (
        "import resource, sys\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from chunk_memory import tokenizer\n"
        "from llm2vec_search.indexing.chunking import chunk_document\n"
        "from llm2vec_search.indexing.extract import Document\n"
        "tokenizer = tokenizer()\n"
        "text = open(sys.argv[1], encoding='utf-8').read()\n"
        f"{statement}\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(text_file), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    if not SCIFACT.is_dir():
        sys.exit(f"error: {SCIFACT} is missing; this benchmark needs the shared SciFact data")
    console = Console(width=120)
    with tempfile.TemporaryDirectory() as folder:
        text_file = Path(folder) / "big.md"
        text_file.write_text(abstracts(FILE_BYTES), encoding="utf-8")
        table = Table(title=f"Chunking a {text_file.stat().st_size / 1e6:.1f} MB Markdown file: peak RSS")
        for column in ("what runs", "peak MB", "above the tokenizer"):
            table.add_column(column, justify="right")
        floor = None
        for name, statement in ROWS.items():
            peak = peak_mb(statement, text_file)
            floor = floor or peak
            table.add_row(name, f"{peak:,.0f}", f"{peak - floor:,.0f}")
        console.print(table)

    from llm2vec_search.indexing.chunking import MAX_HEADING_CHARS, chunk_document
    from llm2vec_search.indexing.extract import Document

    text = "# " + "h" * HEADING_CHARS + "\n\n" + abstracts(450_000)
    chunks = chunk_document(Document("heading.md", text, "markdown"), tokenizer())
    stored = sum(len(chunk.heading) for chunk in chunks)
    console.print(
        f"100 KB heading over {len(chunks)} chunks: {stored:,} heading characters stored "
        f"(each cut at {MAX_HEADING_CHARS}; uncut it would be {len(chunks) * HEADING_CHARS:,})"
    )


if __name__ == "__main__":
    main()

"""How long `l2v-search index` takes on a tree it has already indexed: the everyday rerun.

Writes a tree of `--files` small text files (Wikipedia sentences, 100 per folder), indexes it once, then times
reruns: unchanged; after `touch` of 1% of the files (same content, new mtime: hashed, not re-embedded); after
editing 10 files (re-embedded). Each rerun is timed in-process (`Index.update`) and as a real CLI subprocess
(Python start-up and imports included) for the unchanged case.

The embedding model is a tiny random-init Gemma 3 with the real Gemma tokenizer: reruns of unchanged files
embed nothing, so the model's size does not enter the rerun times, and the first build takes seconds.

    python benchmarks/index_rescan.py                  # 10,000 files
    python benchmarks/index_rescan.py --files 1000
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from llm2vec_search.encoder.models import resolve_weights
from llm2vec_search.indexing import Index

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = ROOT.parent / "shared" / "data" / "wiki_en" / "sentences.txt"


def tiny_gemma_dir(folder: Path) -> Path:
    """A 2-layer, 64-wide random Gemma 3 with the real tokenizer, saved as a Hugging Face directory."""
    import torch
    from transformers import AutoModel, AutoTokenizer, Gemma3TextConfig

    weights, _ = resolve_weights("gemma3-270m")
    tokenizer = AutoTokenizer.from_pretrained(weights)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=1024,
        layer_types=["sliding_attention", "full_attention"],
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_tree(root: Path, count: int) -> list[Path]:
    if not SENTENCES.is_file():
        sys.exit(f"error: {SENTENCES} is missing; this benchmark needs the shared wiki_en data")
    sentences = SENTENCES.read_text().splitlines()
    paths = []
    for i in range(count):
        path = root / f"part-{i // 100:03d}" / f"note-{i:05d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(sentences[i % len(sentences)] + "\n")
        paths.append(path)
    return paths


def timed_update(index_dir: Path, tree: Path) -> tuple[float, dict]:
    with Index.open(index_dir) as index:
        began = time.perf_counter()
        summary = index.update([tree])
        return time.perf_counter() - began, summary.to_dict()


def timed_cli(index_dir: Path, tree: Path) -> float:
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "llm2vec_search", "index", str(tree), "--name", str(index_dir)],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=10_000)
    args = parser.parse_args()
    console = Console(width=120)  # keeps the columns when printed to a file
    table = Table(title=f"Rerunning `index` on {args.files:,} indexed files")
    for column in ("run", "files changed", "chunks added", "in-process s", "CLI s"):
        table.add_column(column, justify="right")

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        model = tiny_gemma_dir(scratch / "tiny-gemma3")
        tree = scratch / "tree"
        paths = write_tree(tree, args.files)
        index_dir = scratch / "index"
        began = time.perf_counter()
        with Index.open(index_dir, model=str(model), create=True) as index:
            summary = index.update([tree]).to_dict()
        first = time.perf_counter() - began
        table.add_row(
            "first build (tiny model)",
            f"{summary['files_added']:,}",
            f"{summary['chunks_added']:,}",
            f"{first:.1f}",
            "",
        )

        def rerun(label: str) -> None:
            seconds, summary = timed_update(index_dir, tree)
            cli = f"{timed_cli(index_dir, tree):.2f}" if label == "unchanged" else ""
            changed = f"{summary['files_changed']:,}"
            table.add_row(label, changed, f"{summary['chunks_added']:,}", f"{seconds:.2f}", cli)

        rerun("unchanged")
        for path in paths[::100]:  # 1%: new mtime, same bytes
            os.utime(path)
        rerun("1% touched")
        for path in paths[1:11]:
            path.write_text(path.read_text() + "An edited line.\n")
        rerun("10 files edited")
    console.print(table)


if __name__ == "__main__":
    main()

"""Chunks/s of `Index.update` embedding locally vs on Ray (`--ray`) with 1 and 2 workers, at equal CPUs: the
point is Ray's overhead (shipping the model, scheduling batches, streaming vectors back), not a speed-up.

All runs index the same generated corpus into fresh indexes, in one process, one after the other, so their
ratios hold even on a busy machine. Ray runs start a local instance (as a bare `--ray` does) with
the CPUs the local run uses: `--ray-workers 1` gives one encoder all of them as torch threads, 2 gives each
half. The default model is a random Gemma 3 as wide as the default (640) but with `--layers` layers, so that
a run takes a minute on a CPU; `--model SPEC` measures a real one.

    python benchmarks/ray_index.py                        # 400 files, 2 CPUs
    python benchmarks/ray_index.py --files 2000 --model default

On a GPU cluster, the same index is built from the head node (or any machine that reaches it) with:

    l2v-search index /data/corpus --name big --ray-address auto --ray-workers 8 --device cuda
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from llm2vec_search.indexing import Index
from llm2vec_search.indexing.ray_embed import ray_embedder

WORDS = ["river", "stone", "cloud", "maple", "copper", "lantern", "harbor", "meadow", "violet", "thunder"]


def write_corpus(root: Path, files: int) -> Path:
    for i in range(files):
        words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(200)]
        path = root / f"group{i % 20}" / f"note{i:05d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"Note {i}.\n\n" + " ".join(words) + f".\n\nThe count is {i}.\n")
    return root


def random_gemma_dir(folder: Path, layers: int) -> Path:
    """A random-weight Gemma 3 as wide as Gemma 3 270M, with a small byte-level tokenizer trained here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import AutoModel, Gemma3TextConfig, PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator([" ".join(WORDS)] * 20, trainer)
    backend.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>"
    )
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=640,
        intermediate_size=2048,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=256,
        max_position_embeddings=1024,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        layer_types=["full_attention"] * layers,
    )
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def timed_update(folder: Path, corpus: Path, model: str, workers: int | None, cpus: int) -> tuple[int, float]:
    """(chunks embedded, seconds of `update`), locally (`workers` None) or on a fresh local Ray instance."""
    with Index.open(folder, model=model, create=True, device="cpu", dtype="float32") as index:
        if workers is None:
            started = time.perf_counter()
            summary = index.update([corpus])
        else:
            with ray_embedder(index.encoder, "local", workers, "cpu", "float32", cpus=cpus) as embedder:
                started = time.perf_counter()
                summary = index.update([corpus], embedder=embedder)
        return summary.chunks_added, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs for every run (torch threads / Ray CPUs)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--model", help="a model spec instead of the random 640-wide Gemma 3")
    args = parser.parse_args()
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    torch.set_num_threads(args.cpus)
    with tempfile.TemporaryDirectory(prefix="ray-bench") as scratch:
        root = Path(scratch)
        corpus = write_corpus(root / "corpus", args.files)
        model = args.model or str(random_gemma_dir(root / "model", args.layers))
        print(f"{args.files} files, model {args.model or f'random Gemma 3, 640 wide, {args.layers} layers'}")
        print(f"{'run':<22} {'chunks':>7} {'seconds':>8} {'chunks/s':>9} {'vs local':>9}")
        local_rate = 0.0
        for label, workers in (("local", None), ("--ray, 1 worker", 1), ("--ray, 2 workers", 2)):
            chunks, seconds = timed_update(root / label.replace(" ", "_"), corpus, model, workers, args.cpus)
            rate = chunks / seconds
            local_rate = local_rate or rate
            print(f"{label:<22} {chunks:>7} {seconds:>8.1f} {rate:>9.1f} {rate / local_rate:>8.0%}")


if __name__ == "__main__":
    main()

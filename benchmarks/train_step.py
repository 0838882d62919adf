"""Time and memory of a supervised training step as `--lora-layers` varies, on the shipped default.

Each row runs in a fresh interpreter (so its peak RSS, `ru_maxrss`, is its own): the supervised stage on top
of the shipped default, the same SQuAD train batches (question, paragraph, in-article hard negative; texts cut
to 128 tokens), one untimed step, then `--steps` timed steps of forward + backward (no optimizer: it is the
same small cost in every row). The ratio is against the row that trains every layer.

    python benchmarks/train_step.py --layers 18 9 6 3 --batch-size 16 --steps 3
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from cpu_share import OtherWork
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
SQUAD_PAIRS = ROOT.parent / "shared" / "data" / "train" / "squad_train_pairs.jsonl.gz"


def one_row(layers: int, batch_size: int, steps: int) -> dict:
    """Run in the child: build the stage, time `steps` steps, report seconds per step and peak RSS."""
    import torch

    from llm2vec_search.training import (
        PairSource,
        StartingPoint,
        SupervisedSettings,
        SupervisedStage,
        read_pairs,
    )

    pairs = read_pairs([SQUAD_PAIRS])[: batch_size * (steps + 1)]
    settings = SupervisedSettings(batch_size=batch_size, max_length=128, lora_layers=layers, device="cpu")
    stage = SupervisedStage(StartingPoint.from_spec("default"), [PairSource("squad", pairs)], settings)
    source = stage.sources[0]
    batches = [(source, pairs[i : i + batch_size]) for i in range(0, len(pairs), batch_size)]
    trainable = sum(p.numel() for p in stage.model.parameters() if p.requires_grad)
    stage.backward(batches[0], lambda loss: loss)  # untimed: first-call allocations
    started = time.perf_counter()
    for batch in batches[1:]:
        stage.backward(batch, lambda loss: loss)
    seconds = (time.perf_counter() - started) / steps
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "layers": layers,
        "seconds": seconds,
        "peak_mb": peak_mb,
        "trainable": trainable,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layers", type=int, nargs="+", default=[18, 9, 6, 3], help="18 = every layer")
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per step (3 texts each)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per row")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(one_row(args.child, args.batch_size, args.steps)))
        return
    rows = []
    with OtherWork() as other:
        for layers in args.layers:
            command = [sys.executable, __file__, "--child", str(layers)]
            command += ["--batch-size", str(args.batch_size), "--steps", str(args.steps)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(output.strip().splitlines()[-1]))
    baseline = rows[0]["seconds"]
    table = Table(
        title=f"supervised step, {args.batch_size} pairs, 128 tokens, CPU fp32, {args.steps} steps a row"
    )
    for column in ("LoRA layers", "trainable params", "s/step", "speed vs first row", "peak RSS (MB)"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            str(row["layers"]),
            f"{row['trainable']:,}",
            f"{row['seconds']:.1f}",
            f"{baseline / row['seconds']:.2f}x",
            f"{row['peak_mb']:,.0f}",
        )
    Console(width=120).print(table)
    print(f"torch threads: {rows[0]['threads']}")
    print(other.line())


if __name__ == "__main__":
    main()

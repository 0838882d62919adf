"""Weight-only int8 for the query path, first check: the 18 layers' matmuls of one 25-token query (Gemma 3
270M's shapes, random weights) in fp32, in bf16 and with PyTorch's `_weight_int8pack_mm` (int8 weights with a
scale per output row, bf16 activations, which keep fp32's range). A single query reads every weight once, so
this is what bounds its latency; the table gives ms per query and the ratio to fp32.

    python benchmarks/int8_matmul.py
"""

import argparse
import time
from collections.abc import Callable

import torch

# (in, out) of one layer's projections: q, k, v, o, gate, up, down
SHAPES = [(640, 1024), (640, 256), (640, 256), (1024, 640), (640, 2048), (640, 2048), (2048, 640)]
LAYERS = 18


def layer_matmuls(kind: str, tokens: int) -> list[Callable[[], torch.Tensor]]:
    """One closure per matmul of every layer, each with its own weights (so caches do not hide the reads)."""
    calls = []
    for _ in range(LAYERS):
        for inputs, outputs in SHAPES:
            weight, x = torch.randn(outputs, inputs), torch.randn(tokens, inputs)
            if kind == "fp32":
                calls.append(lambda x=x, w=weight: torch.nn.functional.linear(x, w))
            elif kind == "bf16":
                calls.append(lambda x=x.bfloat16(), w=weight.bfloat16(): torch.nn.functional.linear(x, w))
            else:
                scale = weight.abs().amax(dim=1) / 127
                packed = (weight / scale[:, None]).round().to(torch.int8)
                calls.append(
                    lambda x=x.bfloat16(), w=packed, s=scale.bfloat16(): torch._weight_int8pack_mm(x, w, s)
                )
    return calls


def milliseconds(calls: list[Callable[[], torch.Tensor]], repeats: int) -> float:
    for call in calls:
        call()
    began = time.perf_counter()
    for _ in range(repeats):
        for call in calls:
            call()
    return (time.perf_counter() - began) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads")
    baseline = None
    for kind in ("fp32", "bf16", "int8 weights"):
        ms = milliseconds(layer_matmuls(kind, args.tokens), args.repeats)
        baseline = baseline or ms
        print(f"{kind:>13}: {ms:6.1f} ms per {args.tokens}-token query  ({baseline / ms:.2f}× fp32)")


if __name__ == "__main__":
    main()

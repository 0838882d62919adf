"""Which ONNX graph embeds a query fastest here, and how close its vectors stay (issue 23, item 2).

The shipped default's graph exported once, then MatMulNBits-quantized at several settings (bits, block size,
accuracy level: 0 = the build's default, float32 arithmetic on dequantized weights; 4 = 8-bit arithmetic);
each one runs `--queries` SciFact claims one at a time in ONNX Runtime beside float32 PyTorch, the ms p50 and
p99, and the lowest cosine of its query vectors to PyTorch's. The query model `index` builds picks between
float32 and int8 (8 bits, blocks of 32, level 4) the same way on each machine (`onnx_export.choose_graph`).

    python benchmarks/query_graphs.py
    python benchmarks/query_graphs.py --model RUN_DIR      # another model (e.g. a pruned one)
"""

import argparse
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table
from search_latency import embed_one_at_a_time, percentiles, read_texts

from llm2vec_search.encoder import Encoder
from llm2vec_search.encoder.onnx_export import build_query_model, export_graph, optimize_graph, quantize_graph
from llm2vec_search.encoder.onnx_query import GRAPHS, QUERY_MARKER, QueryEncoder

# (bits, block size, accuracy level)
VARIANTS = [(8, 32, 4), (8, 128, 4), (8, 32, 0), (4, 32, 4), (4, 128, 0)]


def main() -> None:
    import json

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--model", default="default", help="a model spec, as --model takes them")
    args = parser.parse_args()
    claims = read_texts()[1][: args.queries]
    encoder = Encoder.from_pretrained(args.model, query_cache_size=0)
    entry = build_query_model(encoder, keep_all=True, replace=True)  # rebuilt, keeping both of its graphs
    manifest = json.loads((entry / QUERY_MARKER).read_text())
    table = Table(title=f"{args.model}: one query at a time, {len(claims)} SciFact claims")
    for column in ("graph", "p50 ms", "p99 ms", "lowest cosine to PyTorch"):
        table.add_column(column)
    reference, samples = embed_one_at_a_time(
        lambda t: encoder.encode([t], instruction=encoder.query_instruction)[0], claims
    )
    table.add_row("float32 PyTorch", *(f"{ms:.1f}" for ms in percentiles(samples)), "1")
    with tempfile.TemporaryDirectory() as scratch:
        plain = Path(scratch) / "float32.onnx"
        export_graph(encoder, plain)
        graphs = {"float32": GRAPHS["float32"]}
        for bits, block, level in VARIANTS:
            name = f"{bits}-bit, blocks of {block}, accuracy level {level}"
            quantized = Path(scratch) / f"q{bits}-{block}-{level}.onnx"
            quantize_graph(plain, quantized, bits, block, level)
            optimized = Path(scratch) / f"optimized-{quantized.name}"
            optimize_graph(quantized, optimized)
            graphs[name] = str(optimized)  # an absolute path: the entry's folder does not apply
        for name, graph in graphs.items():
            query_model = QueryEncoder(entry, manifest, graph, query_cache_size=0)
            vectors, samples = embed_one_at_a_time(lambda t, q=query_model: q.encode_queries([t])[0], claims)
            low = float((vectors * reference).sum(axis=1).min())
            table.add_row(
                f"ONNX Runtime, {name}", *(f"{ms:.1f}" for ms in percentiles(samples)), f"{low:.5f}"
            )
            del query_model
    Console(width=120).print(table)


if __name__ == "__main__":
    main()

"""Hybrid search with the dense list down-weighted in reciprocal rank fusion, on a BEIR split.

Fusion score = w / (60 + dense rank) + 1 / (60 + BM25 rank); w = 0 is BM25 over the same chunks, w = 1 the
shipped hybrid. Runs through the same cached eval index and search code as `l2v-search eval retrieval`
(build that cache first with `--mode dense` and the same `--max-length`). Query vectors are embedded once.
Choose settings with a dev or train split, never the test split.

    python benchmarks/hybrid_weights.py ../shared/data/squad_dev --split dev --max-length 256
"""

import argparse

from llm2vec_search.encoder import Encoder
from llm2vec_search.evaluation.beir import load_beir
from llm2vec_search.evaluation.retrieval import run_retrieval


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset")
    parser.add_argument("--model", default="default")
    parser.add_argument("--split", default="train")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 1.0, 0.5, 0.35, 0.25, 0.15])
    args = parser.parse_args()
    dataset = load_beir(args.dataset, args.split)
    encoder = Encoder.from_pretrained(args.model, max_length=args.max_length)
    ids = list(dataset.queries)
    vectors = dict(zip(ids, encoder.encode_queries([dataset.queries[i] for i in ids]), strict=True))
    print(f"{args.split} split, {len(dataset.queries)} queries, model {args.model}")
    print(
        f"{'dense weight':>12}  "
        + "  ".join(f"{name:>10}" for name in ("ndcg@10", "recall@10", "recall@100"))
    )
    for weight in args.weights:
        result = run_retrieval(dataset, encoder, "hybrid", dense_weight=weight, query_vectors=vectors)
        metrics = result.metrics
        row = "  ".join(f"{metrics[name]:>10.4f}" for name in ("ndcg@10", "recall@10", "recall@100"))
        print(f"{weight:>12}  {row}", flush=True)


if __name__ == "__main__":
    main()

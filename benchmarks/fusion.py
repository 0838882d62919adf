"""Hybrid fusion on a BEIR split: reciprocal rank fusion, convex combinations of scaled scores, and the raw
cosine plus BM25 over the query's IDF mass (what hybrid search does).

Both retrievers' top chunks are fetched once per query through the cached eval index (build it first with
`l2v-search eval retrieval --mode dense` and the same `--max-length`), as deep as the deepest of `--depths`
(by default `FUSION_DEPTH`, as hybrid search takes for k ≤ 50; shallower depths take the lists' prefixes),
then fused offline, for each weight w of the dense list against BM25's 1:
- `rrf`: w / (60 + dense rank) + 1 / (60 + BM25 rank), what hybrid search did before;
- `convex min-max`: w · d + b, each list's scores scaled from its lowest to its highest (Bruch et al. 2023,
  "An Analysis of Fusion Functions for Hybrid Retrieval"); a chunk missing from a list scores 0 there;
- `convex theoretical`: the same scaled from the lowest score possible (cosine −1, BM25 0) instead, which does
  not depend on how deep the lists are fetched: what hybrid search did before the IDF mass;
- `idf mass`: dense as in `convex theoretical`, BM25 divided by the query's IDF mass (the sum of its words'
  IDFs, which is about what a chunk of average length holding each word once scores) instead of by the list's
  best score, so a chunk matching one word of a long query no longer gets BM25's full weight;
- `cosine + idf mass`: the same BM25, and the raw cosine, so that neither list is scaled by its own best:
  `hybrid_scores`, what hybrid search does now.
Documents are ranked by their best chunk, as `l2v-search eval` ranks them. Choose on dev splits, never test.

    python benchmarks/fusion.py ../shared/data/squad_dev --split dev --model MODEL --max-length 256
"""

import argparse
from collections.abc import Callable, Sequence

from llm2vec_search.encoder import Encoder
from llm2vec_search.evaluation import load_beir, mean_metrics
from llm2vec_search.evaluation.retrieval import build_eval_index, eval_chunking
from llm2vec_search.indexing.options import SearchOptions
from llm2vec_search.indexing.search import FUSION_DEPTH, Hit, bm25_ranking, hybrid_scores, rank_hits

RRF_K = 60
# The lowest score each retriever can give, from which `convex theoretical` scales its scores.
LOWEST_COSINE, LOWEST_BM25 = -1.0, 0.0
Scores = dict[int, float]  # chunk id → score


def convex_fusion(
    rankings: Sequence[Sequence[tuple[int, float]]], weights: Sequence[float], floors: Sequence[float]
) -> Scores:
    """score(id) = Σ over rankings of weight × (score − floor) / (the ranking's best score − floor), 0 where
    the id is absent."""
    fused: Scores = {}
    for ranking, weight, floor in zip(rankings, weights, floors, strict=True):
        if not ranking:
            continue
        span = max(score for _, score in ranking) - floor
        for item, score in ranking:
            scaled = (score - floor) / span if span > 0 else 1.0
            fused[item] = fused.get(item, 0.0) + weight * scaled
    return fused


def rrf(dense: list[Hit], bm25: list[Hit], weight: float, bound: float) -> Scores:
    scores: Scores = {}
    for hits, list_weight in ((dense, weight), (bm25, 1.0)):
        for rank, hit in enumerate(hits, start=1):
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + list_weight / (RRF_K + rank)
    return scores


def pairs(hits: list[Hit]) -> list[tuple[int, float]]:
    return [(hit.chunk_id, hit.score) for hit in hits]


def convex_min_max(dense: list[Hit], bm25: list[Hit], weight: float, bound: float) -> Scores:
    """`convex_fusion` with each list's own lowest score as its floor."""
    lists = [pairs(dense), pairs(bm25)]
    floors = [min((score for _, score in ranking), default=0.0) for ranking in lists]
    return convex_fusion(lists, [weight, 1.0], floors)


def convex_theoretical(dense: list[Hit], bm25: list[Hit], weight: float, bound: float) -> Scores:
    return convex_fusion([pairs(dense), pairs(bm25)], [weight, 1.0], [LOWEST_COSINE, LOWEST_BM25])


def by_idf_mass(dense: list[Hit], bm25: list[Hit], weight: float, bound: float) -> Scores:
    scaled = convex_fusion([pairs(dense)], [weight], [LOWEST_COSINE])
    return hybrid_scores(scaled.items(), pairs(bm25), 1.0, bound)


def cosine_and_idf_mass(dense: list[Hit], bm25: list[Hit], weight: float, bound: float) -> Scores:
    return hybrid_scores(pairs(dense), pairs(bm25), weight, bound)


# Each method fuses one query's (dense hits, BM25 hits, dense weight, the query's IDF mass).
METHODS: dict[str, Callable[[list[Hit], list[Hit], float, float], Scores]] = {
    "rrf": rrf,
    "convex min-max": convex_min_max,
    "convex theoretical": convex_theoretical,
    "idf mass": by_idf_mass,
    "cosine + idf mass": cosine_and_idf_mass,
}


def doc_ranking(scores: Scores, paths: dict[int, str]) -> list[str]:
    """Documents by their best chunk's fused score."""
    return list(dict.fromkeys(paths[key] for key in sorted(scores, key=lambda k: -scores[k])))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset")
    parser.add_argument("--model", default="default")
    parser.add_argument("--split", default="train")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--weights", type=float, nargs="+", default=[3.0, 2.0, 1.0, 0.5, 0.35, 0.25, 0.15])
    parser.add_argument("--depths", type=int, nargs="+", default=[FUSION_DEPTH], help="chunks per list")
    args = parser.parse_args()
    dataset = load_beir(args.dataset, args.split)
    encoder = Encoder.from_pretrained(args.model, max_length=args.max_length)
    ids = list(dataset.queries)
    texts = [dataset.queries[i] for i in ids]
    index, embedded = build_eval_index(dataset, encoder, *eval_chunking(encoder.max_length))
    with index:
        vectors = encoder.encode_queries(texts)
        deepest = max(args.depths)
        dense = index.search_many(texts, SearchOptions(k=deepest, mode="dense"), query_vectors=vectors)
        bm25_rankings = [bm25_ranking(index.store, text, deepest) for text in texts]
    bm25 = [rank_hits(None, ranking, deepest, 0.0) for ranking in bm25_rankings]
    bounds = [ranking.idf_mass for ranking in bm25_rankings]
    paths = {hit.chunk_id: hit.path for hits in dense + bm25 for hit in hits}

    def ndcg(rankings: list[list[str]]) -> float:
        return mean_metrics(dataset.qrels, dict(zip(ids, rankings, strict=True)))["ndcg@10"]

    print(f"{args.split} split, {len(ids)} queries, model {args.model}, {embedded} chunks embedded now")
    for depth in args.depths:
        print(
            f"{depth}-deep lists\ndense alone {ndcg([[h.path for h in hits[:depth]] for hits in dense]):.4f}"
        )
        print(f"BM25 alone  {ndcg([[h.path for h in hits[:depth]] for hits in bm25]):.4f}")
        print(
            f"nDCG@10 by dense weight (BM25's is 1)\n{'weight':>8}  " + "  ".join(f"{m:>18}" for m in METHODS)
        )
        for weight in args.weights:
            row = [
                ndcg(
                    [
                        doc_ranking(method(d[:depth], b[:depth], weight, m), paths)
                        for d, b, m in zip(dense, bm25, bounds, strict=True)
                    ]
                )
                for method in METHODS.values()
            ]
            print(f"{weight:>8}  " + "  ".join(f"{value:>18.4f}" for value in row), flush=True)


if __name__ == "__main__":
    main()

"""Retrieval metrics through `pytrec_eval` (trec_eval's own code): nDCG@10, Recall@10/100, MRR@10.

Runs are ranked lists, not scores: we turn ranks into descending scores so that trec_eval's tie-breaking can
never reorder them. A judged query with no results counts as 0, so the mean is over every judged query.
"""

from collections.abc import Mapping, Sequence

METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
_TREC_MEASURES = {"ndcg@10": "ndcg_cut_10", "recall@10": "recall_10", "recall@100": "recall_100"}
MRR_DEPTH = 10


def as_trec_run(ranking: Sequence[str]) -> dict[str, float]:
    """doc id → score, decreasing with rank (duplicates keep their best rank)."""
    run: dict[str, float] = {}
    for position, doc_id in enumerate(ranking):
        run.setdefault(doc_id, float(len(ranking) - position))
    return run


def per_query_metrics(
    qrels: Mapping[str, Mapping[str, int]], rankings: Mapping[str, Sequence[str]]
) -> dict[str, dict[str, float]]:
    """query id → metric → value, for every judged query (0 for a query missing from `rankings`)."""
    import pytrec_eval

    qrels = {q: dict(judged) for q, judged in qrels.items()}
    full = {q: as_trec_run(rankings[q]) for q in qrels if rankings.get(q)}
    top = {q: as_trec_run(rankings[q][:MRR_DEPTH]) for q in full}
    cut_measures = {"ndcg_cut.10", "recall.10,100"}
    scored = pytrec_eval.RelevanceEvaluator(qrels, cut_measures).evaluate(full) if full else {}
    reciprocal = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top) if top else {}
    result = {}
    for query_id in qrels:
        values = dict.fromkeys(METRICS, 0.0)
        if query_id in scored:
            for name, measure in _TREC_MEASURES.items():
                values[name] = scored[query_id][measure]
            values["mrr@10"] = reciprocal[query_id]["recip_rank"]
        result[query_id] = values
    return result


def mean_metrics(
    qrels: Mapping[str, Mapping[str, int]], rankings: Mapping[str, Sequence[str]]
) -> dict[str, float]:
    """Each metric averaged over every judged query."""
    per_query = per_query_metrics(qrels, rankings)
    return {name: sum(v[name] for v in per_query.values()) / len(per_query) for name in METRICS}


__all__ = ["METRICS", "as_trec_run", "mean_metrics", "per_query_metrics"]

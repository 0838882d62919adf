"""Retrieval metrics against values computed by hand, and STS's Spearman against a known ranking."""

import math

import pytest

from llm2vec_search.errors import L2VError
from llm2vec_search.evaluation.metrics import as_trec_run, mean_metrics, per_query_metrics
from llm2vec_search.evaluation.sts import spearman


def test_ndcg_recall_mrr_of_a_known_ranking():
    qrels = {"q1": {"d1": 1, "d3": 1}}
    ranking = {"q1": ["d2", "d1", "d4", "d3"]}
    # relevant at ranks 2 and 4: DCG = 1/log2(3) + 1/log2(5); ideal puts them at ranks 1 and 2
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    ideal = 1 / math.log2(2) + 1 / math.log2(3)
    values = per_query_metrics(qrels, ranking)["q1"]
    assert values["ndcg@10"] == pytest.approx(dcg / ideal)
    assert values["recall@10"] == 1.0
    assert values["recall@100"] == 1.0
    assert values["mrr@10"] == pytest.approx(0.5)


def test_graded_relevance_uses_the_grade_as_gain():
    qrels = {"q": {"a": 2, "b": 1}}
    values = per_query_metrics(qrels, {"q": ["b", "a"]})["q"]
    dcg = 1 + 2 / math.log2(3)
    ideal = 2 + 1 / math.log2(3)
    assert values["ndcg@10"] == pytest.approx(dcg / ideal)


def test_cutoffs_ignore_documents_past_rank_10():
    qrels = {"q": {"hit": 1}}
    ranking = {"q": [f"miss{i}" for i in range(10)] + ["hit"]}  # the relevant document at rank 11
    values = per_query_metrics(qrels, ranking)["q"]
    assert values["ndcg@10"] == 0.0
    assert values["recall@10"] == 0.0
    assert values["mrr@10"] == 0.0
    assert values["recall@100"] == 1.0


def test_order_not_trec_tie_breaking_decides():
    qrels = {"q": {"a": 1}}
    # as scores these would tie; the ranking must stay as given ("z" first, then "a")
    values = per_query_metrics(qrels, {"q": ["z", "a"]})["q"]
    assert values["mrr@10"] == pytest.approx(0.5)
    assert as_trec_run(["z", "a", "z"]) == {"z": 3.0, "a": 2.0}


def test_a_query_without_results_counts_as_zero_in_the_mean():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    means = mean_metrics(qrels, {"q1": ["d1"]})
    assert means["ndcg@10"] == pytest.approx(0.5)
    assert means["mrr@10"] == pytest.approx(0.5)


def test_spearman_is_scaled_by_100():
    assert spearman([0.1, 0.2, 0.3, 0.4], [1, 2, 3, 4]) == pytest.approx(100.0)
    assert spearman([0.4, 0.3, 0.2, 0.1], [1, 2, 3, 4]) == pytest.approx(-100.0)
    # one swap among four: rho = 1 - 6·(1+1)/(4·15) = 0.8
    assert spearman([0.1, 0.3, 0.2, 0.4], [1, 2, 3, 4]) == pytest.approx(80.0)


def test_spearman_of_constant_scores_is_an_error():
    with pytest.raises(L2VError, match="undefined"):
        spearman([0.5, 0.5, 0.5], [1, 2, 3])

"""Metrics against values worked out by hand from trec_eval's definitions."""

from __future__ import annotations

import math

import pytest

from ragcun.eval.metrics import compute_metrics, per_query_metric
from ragcun.eval.retrieval import write_trec_run

QRELS = {"q1": {"d1": 1, "d3": 1}, "q2": {"d2": 1}, "q3": {"d5": 1}, "q4": {"d99": 1}}
RUN = {
    "q1": {"d2": 0.9, "d1": 0.8, "d4": 0.7, "d3": 0.6},  # relevant at ranks 2 and 4
    "q2": {"d1": 0.5, "d2": 0.4},  # relevant at rank 2
    "q3": {"d1": 0.1},  # relevant not retrieved
    "q4": {**{f"x{i}": 1.0 - i / 20 for i in range(10)}, "d99": 0.01},  # relevant at rank 11
}


def test_metrics_by_hand():
    m = compute_metrics(QRELS, RUN)
    ndcg_q1 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    ndcg_q2 = 1 / math.log2(3)
    assert m["num_queries"] == 4
    assert m["recall@1"] == pytest.approx(0.0)
    assert m["recall@5"] == pytest.approx(2 / 4)
    assert m["recall@10"] == pytest.approx(2 / 4)
    assert m["recall@20"] == pytest.approx(3 / 4)
    assert m["ndcg@10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 4)
    assert m["mrr@10"] == pytest.approx((0.5 + 0.5) / 4)  # rank 11 is outside the cut
    assert m["mrr"] == pytest.approx((0.5 + 0.5 + 1 / 11) / 4)
    assert m["map@100"] == pytest.approx(((0.5 + 0.5) / 2 + 0.5 + 1 / 11) / 4)


def test_judged_query_missing_from_run_counts_as_zero():
    run = {k: v for k, v in RUN.items() if k != "q2"}
    assert compute_metrics(QRELS, run)["recall@5"] == pytest.approx(1 / 4)


def test_unjudged_run_queries_are_ignored():
    m = compute_metrics(QRELS, {**RUN, "q_unjudged": {"d1": 1.0}})
    assert m["num_queries"] == 4


def test_per_query_ndcg():
    per_q = per_query_metric(QRELS, RUN)
    assert per_q["q2"] == pytest.approx(1 / math.log2(3)) and per_q["q3"] == 0.0


def test_trec_run_file(tmp_path):
    path = write_trec_run({"q1": RUN["q1"]}, tmp_path / "r.run", tag="t")
    lines = path.read_text().splitlines()
    assert lines[0] == "q1 Q0 d2 1 0.900000 t"
    assert [line.split()[2] for line in lines] == ["d2", "d1", "d4", "d3"]

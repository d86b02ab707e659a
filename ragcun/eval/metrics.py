"""IR metrics with trec_eval's definitions, through pytrec_eval (Van Gysel & de Rijke, SIGIR 2018).

``run`` maps query id → {doc id: score (higher is better)}; ``qrels`` maps query id → {doc id: relevance}.
Reported, averaged over the judged queries (trec_eval averages over queries present in both; a judged
query with no retrieved document counts as 0, as trec_eval's ``-c`` does):

* ``recall@k`` — trec_eval ``recall.k``: relevant documents in the top k / all relevant documents;
* ``ndcg@10`` — ``ndcg_cut.10`` (Järvelin & Kekäläinen 2002, gains = relevance, log2 discount);
* ``mrr@10`` — ``recip_rank`` over the top 10 only (the BEIR / MTEB "MRR@10");
* ``mrr`` — ``recip_rank`` over the whole retrieved list (``--top_k`` deep);
* ``map@100`` — ``map_cut.100``.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytrec_eval

DEFAULT_K_VALUES = (1, 5, 10, 20, 50, 100)


def truncate_run(run: dict[str, dict[str, float]], k: int) -> dict[str, dict[str, float]]:
    """Each query's top k documents. Ties break as trec_eval does: by descending doc id."""
    out = {}
    for qid, docs in run.items():
        ranked = sorted(docs.items(), key=lambda item: (item[1], item[0]), reverse=True)[:k]
        out[qid] = dict(ranked)
    return out


def _mean(per_query: dict[str, dict[str, float]], measure: str, qids: Iterable[str]) -> float:
    qids = list(qids)
    return sum(per_query.get(q, {}).get(measure, 0.0) for q in qids) / max(len(qids), 1)


def compute_metrics(
    qrels: dict[str, dict[str, int]],
    run: dict[str, dict[str, float]],
    k_values: Iterable[int] = DEFAULT_K_VALUES,
) -> dict[str, float]:
    k_values = sorted(set(int(k) for k in k_values))
    qrels = {q: {d: int(r) for d, r in docs.items()} for q, docs in qrels.items() if any(r > 0 for r in docs.values())}
    run = {q: {d: float(s) for d, s in docs.items()} for q, docs in run.items() if q in qrels}
    # Judged queries with nothing retrieved still count (as zeros) in every mean below.
    judged = list(qrels)
    measures = {f"recall.{','.join(map(str, k_values))}", "ndcg_cut.10", "recip_rank", "map_cut.100"}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    per_query_at10 = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(truncate_run(run, 10))
    metrics = {f"recall@{k}": _mean(per_query, f"recall_{k}", judged) for k in k_values}
    metrics["ndcg@10"] = _mean(per_query, "ndcg_cut_10", judged)
    metrics["mrr@10"] = _mean(per_query_at10, "recip_rank", judged)
    metrics["mrr"] = _mean(per_query, "recip_rank", judged)
    metrics["map@100"] = _mean(per_query, "map_cut_100", judged)
    metrics["num_queries"] = float(len(judged))
    return metrics


def per_query_metric(
    qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]], measure: str = "ndcg_cut.10"
) -> dict[str, float]:
    """One trec_eval measure per judged query (for paired significance tests)."""
    qrels = {q: docs for q, docs in qrels.items() if any(r > 0 for r in docs.values())}
    evaluated = pytrec_eval.RelevanceEvaluator(qrels, {measure}).evaluate({q: run.get(q, {}) for q in qrels})
    key = measure.replace(".", "_")
    return {q: evaluated.get(q, {}).get(key, 0.0) for q in qrels}

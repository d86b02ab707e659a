"""Evaluation in torch alone — exact search on the model's device and trec_eval's nDCG@10 and Recall@k —
for a machine whose image has torch and transformers but neither FAISS nor pytrec_eval (a GPU box running
the Gaussian grid in one process, ``bench/gaussian_local.py``). The definitions are trec_eval's, as in
:mod:`ragcun.eval.metrics` (tested equal to pytrec_eval's): a query counts when it has a relevant document;
``ndcg@10`` = DCG of the top 10 (gain = relevance, discount log2(rank + 1)) over the ideal DCG of the judged
documents; ``recall@k`` = relevant documents in the top k over all relevant ones.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def exact_search(corpus: np.ndarray, queries: np.ndarray, top_k: int, distance: str = "l2",
                 device: str | torch.device = "cpu", chunk: int = 1024) -> np.ndarray:
    """Row indices of each query's ``top_k`` nearest documents, nearest first (L2, inner product or cosine)."""
    docs = torch.as_tensor(corpus, dtype=torch.float32, device=device)
    if distance == "cosine":
        docs = torch.nn.functional.normalize(docs, dim=1)
    top_k = min(top_k, len(docs))
    out = []
    for start in range(0, len(queries), chunk):
        q = torch.as_tensor(queries[start:start + chunk], dtype=torch.float32, device=device)
        if distance == "cosine":
            q = torch.nn.functional.normalize(q, dim=1)
        if distance == "l2":  # ‖q − d‖² up to the per-query ‖q‖², which does not change the order
            score = 2 * q @ docs.T - (docs * docs).sum(1)
        else:
            score = q @ docs.T
        out.append(torch.topk(score, top_k, dim=1).indices.cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, top_k), dtype=np.int64)


def per_query_metrics(qrels: dict[str, dict[str, int]], ranked: dict[str, list[str]],
                      k_values: tuple[int, ...] = (10, 100)) -> dict[str, dict[str, float]]:
    """``ndcg@10`` and ``recall@k`` per judged query, from each query's ranked document ids."""
    out: dict[str, dict[str, float]] = {}
    for qid, judged in qrels.items():
        relevant = {d: r for d, r in judged.items() if r > 0}
        if not relevant:
            continue
        docs = ranked.get(qid, [])
        dcg = sum(judged.get(d, 0) / math.log2(i + 2) for i, d in enumerate(docs[:10]) if judged.get(d, 0) > 0)
        ideal = sorted(relevant.values(), reverse=True)[:10]
        idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
        values = {"ndcg@10": dcg / idcg}
        for k in k_values:
            values[f"recall@{k}"] = sum(1 for d in docs[:k] if d in relevant) / len(relevant)
        out[qid] = values
    return out


def mean_metrics(per_query: dict[str, dict[str, float]]) -> dict[str, float]:
    names = next(iter(per_query.values())).keys() if per_query else ()
    return {**{n: float(np.mean([v[n] for v in per_query.values()])) for n in names},
            "num_queries": float(len(per_query))}

"""Evaluation: trec_eval metrics (pytrec_eval), model evaluation over a corpus, TREC run files."""

from ragcun.eval.metrics import compute_metrics, per_query_metric
from ragcun.eval.retrieval import evaluate_model, search_embeddings, write_trec_run

__all__ = ["compute_metrics", "evaluate_model", "per_query_metric", "search_embeddings", "write_trec_run"]

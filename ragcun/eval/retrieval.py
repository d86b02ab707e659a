"""Encode a retrieval set with a model, search the whole corpus, score the run, write a TREC run file."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ragcun.data.retrieval_sets import RetrievalSet
from ragcun.eval.metrics import DEFAULT_K_VALUES, compute_metrics
from ragcun.fs import atomic_file
from ragcun.index.faiss_index import Distance, check_distance, exact_search, to_scores

logger = logging.getLogger(__name__)


def build_run(
    query_ids: list[str], corpus_ids: list[str], scores: np.ndarray, ids: np.ndarray
) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    for qid, row_scores, row_ids in zip(query_ids, scores, ids):
        run[qid] = {corpus_ids[int(i)]: float(s) for s, i in zip(row_scores, row_ids) if i >= 0}
    return run


def search_embeddings(
    retrieval_set: RetrievalSet,
    query_embeddings: np.ndarray,
    corpus_embeddings: np.ndarray,
    top_k: int = 100,
    distance: Distance = "l2",
) -> dict[str, dict[str, float]]:
    """Exact search of every query over the whole corpus; run scores are higher-is-better."""
    distance = check_distance(distance)
    values, ids = exact_search(corpus_embeddings, query_embeddings, top_k, distance)
    return build_run(retrieval_set.query_ids, retrieval_set.corpus_ids, to_scores(values, distance), ids)


def encode_retrieval_set(
    model: Any,
    retrieval_set: RetrievalSet,
    batch_size: int = 32,
    cache_dir: str | os.PathLike | None = None,
    show_progress_bar: bool = True,
) -> tuple[np.ndarray, np.ndarray, float]:
    """(query embeddings, corpus embeddings, seconds spent on the corpus); the corpus through the embedding
    cache when ``cache_dir`` is given."""
    from ragcun.embedding_cache import encode_cached

    start = time.perf_counter()
    corpus = encode_cached(model, retrieval_set.corpus_texts, "document", batch_size, cache_dir, show_progress_bar)
    corpus_s = time.perf_counter() - start
    queries = model.encode(retrieval_set.query_texts, "query", batch_size=batch_size,
                           show_progress_bar=show_progress_bar)
    return np.asarray(queries, np.float32), np.asarray(corpus, np.float32), corpus_s


def evaluate_model(
    model: Any,
    retrieval_set: RetrievalSet,
    batch_size: int = 32,
    top_k: int = 100,
    distance: Distance = "l2",
    k_values: tuple[int, ...] = DEFAULT_K_VALUES,
    show_progress_bar: bool = True,
) -> dict[str, Any]:
    """Metrics of ``model`` on ``retrieval_set``; returns {"metrics", "run", "timing", embeddings}."""
    start = time.perf_counter()
    query_embeddings, corpus_embeddings, corpus_s = encode_retrieval_set(
        model, retrieval_set, batch_size, show_progress_bar=show_progress_bar)
    run = search_embeddings(retrieval_set, query_embeddings, corpus_embeddings, top_k, distance)
    metrics = compute_metrics(retrieval_set.qrels, run, k_values)
    return {
        "metrics": metrics,
        "run": run,
        "timing": {"encode_corpus_s": corpus_s, "total_s": time.perf_counter() - start,
                   "docs_per_s": len(retrieval_set.corpus_texts) / max(corpus_s, 1e-9)},
        "query_embeddings": query_embeddings,
        "corpus_embeddings": corpus_embeddings,
    }


def write_trec_run(run: dict[str, dict[str, float]], path: str | os.PathLike, tag: str = "ragcun") -> Path:
    """TREC run format: ``qid Q0 docid rank score tag``, ranks from 1, best first."""
    path = Path(path)
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for qid, docs in run.items():
            ranked = sorted(docs.items(), key=lambda item: (item[1], item[0]), reverse=True)
            for rank, (doc_id, score) in enumerate(ranked, start=1):
                f.write(f"{qid} Q0 {doc_id} {rank} {score:.6f} {tag}\n")
    return path

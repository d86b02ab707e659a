"""Evaluate several embedding models side by side on one retrieval set: ranking metrics, isotropy of the
corpus embeddings, and how much nDCG survives a compressed FAISS index.

A :class:`Variant` is a model plus how it ranks (its distance) and an optional whitening post-process
(:mod:`ragcun.eval.whitening`, fitted on the corpus embeddings). Variants sharing a model encode the
retrieval set once. Compression: the corpus embeddings go into an index of each type (``sq8``: 8-bit scalar
quantisation, 4×; ``ivfpq``: IVF with PQ at d/4 bytes, 16× smaller than float32, nprobe 16 — see
:func:`ragcun.index.factory_string`) and the queries are searched there instead of exactly; the result is
the metric and its ratio to the exact (flat) search's.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ragcun.data.retrieval_sets import RetrievalSet
from ragcun.errors import RagcunError
from ragcun.eval.isotropy import isotropy_report
from ragcun.eval.metrics import DEFAULT_K_VALUES, compute_metrics, per_query_metric
from ragcun.eval.retrieval import build_run, encode_retrieval_set, search_embeddings
from ragcun.eval.whitening import Whitening
from ragcun.index.bm25 import BM25Index, fuse
from ragcun.index.faiss_index import (
    Distance,
    build_index,
    check_distance,
    exact_search,
    factory_string,
    is_distance,
    search,
    to_scores,
)
from ragcun.index.quantization import DEFAULT_INT8_RANGE, DEFAULT_RESCORE_MULTIPLIER, BinaryIndex

logger = logging.getLogger(__name__)

HEADLINE_METRICS = ("ndcg@10", "recall@10", "mrr@10", "map@100", "recall@100")


@dataclass
class Variant:
    name: str
    model: Any  # a GaussianEmbeddingModel (anything with encode(texts, kind, batch_size=...))
    distance: Distance = "l2"
    whiten: bool = False
    # Centre on the corpus mean and apply a fixed random orthogonal rotation: balances the coordinates of any
    # model for free (the ranking does not change), the honest baseline for scalar and sign quantisation.
    rotate: bool = False
    # dense: the model's ranking; bm25: lexical (model unused); hybrid: the model's ranking fused with BM25's
    # (ragcun.index.bm25.fuse with ``fusion`` and ``alpha``).
    mode: str = "dense"
    fusion: str = "rrf"
    alpha: float = 0.5
    training_dir: Path | None = None  # training.log / metrics.json of a trained checkpoint, for the report
    source: str = ""  # checkpoint path or hub id, for the record


@dataclass
class VariantResult:
    name: str
    source: str
    distance: str
    whiten: bool
    metrics: dict[str, float]
    isotropy: dict[str, float]
    compression: dict[str, dict[str, Any]]
    timing: dict[str, float]
    run: dict[str, dict[str, float]] = field(repr=False)
    corpus_embeddings: np.ndarray | None = field(repr=False)  # None for BM25
    query_embeddings: np.ndarray | None = field(repr=False)
    training_dir: Path | None = None
    mode: str = "dense"
    per_query: dict[str, dict[str, float]] = field(default_factory=dict, repr=False)  # for paired tests

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.source, "mode": self.mode, "distance": self.distance,
                "whitening": self.whiten,
                "metrics": self.metrics, "isotropy": self.isotropy, "compression": self.compression,
                "timing": self.timing, "training_dir": str(self.training_dir) if self.training_dir else None,
                "per_query": self.per_query}


def per_query_metrics(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """nDCG@10 per judged query, rounded to 6 digits: what a paired significance test between variants needs."""
    return {"ndcg@10": {q: round(v, 6) for q, v in per_query_metric(qrels, run, "ndcg_cut.10").items()}}


def random_rotation(dim: int, seed: int = 0) -> np.ndarray:
    """A Haar-random orthogonal matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))
    return (q * np.sign(np.diag(r))).astype(np.float32)


def compressed_search_metrics(
    retrieval_set: RetrievalSet,
    query_embeddings: np.ndarray,
    corpus_embeddings: np.ndarray,
    index_type: str,
    distance: Distance,
    top_k: int = 100,
    k_values: tuple[int, ...] = DEFAULT_K_VALUES,
    int8_range: float = DEFAULT_INT8_RANGE,
    rescore_multiplier: int = DEFAULT_RESCORE_MULTIPLIER,
) -> dict[str, Any]:
    """Metrics of searching ``index_type`` (built over the corpus) instead of exact search, and its size."""
    started = time.perf_counter()
    try:
        index = build_index(corpus_embeddings, index_type=index_type, distance=distance, int8_range=int8_range,
                            rescore_multiplier=rescore_multiplier)
    except (RuntimeError, ValueError) as exc:  # FAISS: bad factory string, too few vectors to train
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise RagcunError(f"compressed index {index_type!r}: FAISS cannot build it over {len(corpus_embeddings)} "
                          f"{corpus_embeddings.shape[1]}-d vectors ({last})") from exc
    values, ids = search(index, query_embeddings, min(top_k, len(corpus_embeddings)), distance)
    run = build_run(retrieval_set.query_ids, retrieval_set.corpus_ids,
                    -values if is_distance(index, distance) else values, ids)
    dim = corpus_embeddings.shape[1]
    extra: dict[str, Any] = {}
    if isinstance(index, BinaryIndex):
        code_bytes = index.code_size
        if index.rescore_multiplier:  # float32 vectors on disk (memory-mapped), read for the candidates only
            extra = {"rescore_multiplier": index.rescore_multiplier, "rescore_bytes_per_vector_on_disk": 4 * dim}
    else:
        # Bytes of the code stored per vector: for IVF the list's code (the list number is implied by the list).
        ivf = faiss.try_extract_index_ivf(index)
        try:
            code_bytes = int(ivf.code_size) if ivf is not None else int(index.sa_code_size())
        except RuntimeError:  # not every index type exposes a standalone code size (HNSW's graph, for one)
            code_bytes = None
    return {
        **extra,
        "faiss_factory": factory_string(index_type, dim, len(corpus_embeddings)),
        "bytes_per_vector": code_bytes,
        "compression": round(4 * dim / code_bytes, 2) if code_bytes else None,
        "metrics": compute_metrics(retrieval_set.qrels, run, k_values),
        "seconds": round(time.perf_counter() - started, 2),
    }


def evaluate_variants(
    variants: list[Variant],
    retrieval_set: RetrievalSet,
    compress: tuple[str, ...] = (),
    batch_size: int = 32,
    top_k: int = 100,
    cache_dir: str | None = None,
    k_values: tuple[int, ...] = DEFAULT_K_VALUES,
    show_progress_bar: bool = True,
    int8_range: float = DEFAULT_INT8_RANGE,
    rescore_multiplier: int = DEFAULT_RESCORE_MULTIPLIER,
) -> list[VariantResult]:
    """Evaluate every variant; see the module docstring."""
    encoded: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}
    lexical: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # BM25's ranking, computed once
    results = []
    for variant in variants:
        distance = check_distance(variant.distance)
        started = time.perf_counter()
        if variant.mode in ("bm25", "hybrid") and not lexical:
            bm25 = BM25Index.build(retrieval_set.corpus_texts)
            lexical["scores"], lexical["ids"] = bm25.search(retrieval_set.query_texts, top_k)
        if variant.mode == "bm25":
            run = build_run(retrieval_set.query_ids, retrieval_set.corpus_ids, lexical["scores"], lexical["ids"])
            metrics = compute_metrics(retrieval_set.qrels, run, k_values)
            results.append(VariantResult(
                name=variant.name, source="bm25s", distance="bm25", whiten=False, metrics=metrics, isotropy={},
                compression={}, timing={"total_s": round(time.perf_counter() - started, 2)}, run=run,
                corpus_embeddings=None, query_embeddings=None, mode="bm25",
                per_query=per_query_metrics(retrieval_set.qrels, run)))
            logger.info("%s: nDCG@10 %.4f", variant.name, metrics["ndcg@10"])
            continue
        key = id(variant.model)
        if key not in encoded:
            logger.info("%s: encoding %d documents and %d queries", variant.name, len(retrieval_set.corpus_texts),
                        len(retrieval_set.query_texts))
            encoded[key] = encode_retrieval_set(variant.model, retrieval_set, batch_size, cache_dir,
                                                show_progress_bar)
        queries, corpus, corpus_s = encoded[key]
        if variant.whiten:
            whitening = Whitening.fit(corpus)
            queries, corpus = whitening.transform(queries), whitening.transform(corpus)
        if variant.rotate:
            mean, rotation = corpus.mean(axis=0), random_rotation(corpus.shape[1])
            queries, corpus = (queries - mean) @ rotation, (corpus - mean) @ rotation
        if variant.mode == "hybrid":
            values, ids = exact_search(corpus, queries, top_k, distance)
            scores, ids = fuse(ids, to_scores(values, distance), lexical["ids"], lexical["scores"], top_k,
                               variant.fusion, variant.alpha)
            run = build_run(retrieval_set.query_ids, retrieval_set.corpus_ids, scores, ids)
        else:
            run = search_embeddings(retrieval_set, queries, corpus, top_k, distance)
        metrics = compute_metrics(retrieval_set.qrels, run, k_values)
        compression = {}
        for index_type in compress if variant.mode == "dense" else ():
            result = compressed_search_metrics(retrieval_set, queries, corpus, index_type, distance, top_k, k_values,
                                               int8_range, rescore_multiplier)
            flat = metrics["ndcg@10"]
            result["relative_ndcg@10"] = result["metrics"]["ndcg@10"] / flat if flat > 0 else None
            compression[index_type] = result
        results.append(VariantResult(
            name=variant.name, source=variant.source, distance=distance, whiten=variant.whiten, metrics=metrics,
            isotropy=isotropy_report(corpus), compression=compression,
            timing={"encode_corpus_s": round(corpus_s, 2), "total_s": round(time.perf_counter() - started, 2)},
            run=run, corpus_embeddings=corpus, query_embeddings=queries, training_dir=variant.training_dir,
            mode=variant.mode, per_query=per_query_metrics(retrieval_set.qrels, run)))
        logger.info("%s: nDCG@10 %.4f", variant.name, metrics["ndcg@10"])
    return results


def results_table(results: list[VariantResult]) -> str:
    """A Markdown table: headline metrics, isotropy, and compressed-index nDCG@10 relative to flat."""
    compress = sorted({k for r in results for k in r.compression})
    header = (["model", "distance"] + list(HEADLINE_METRICS)
              + ["IsoScore", "eff. rank", "mean cos", "Epps–Pulley"] + [f"{c} rel. nDCG@10" for c in compress])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        row = [r.name, r.distance] + [f"{r.metrics.get(m, float('nan')):.4f}" for m in HEADLINE_METRICS]
        iso = r.isotropy
        row += ([f"{iso['isoscore']:.3f}", f"{iso['effective_rank']:.1f}", f"{iso['mean_cosine']:.3f}",
                 f"{iso['epps_pulley']:.2f}"] if iso else ["–"] * 4)
        for c in compress:
            rel = r.compression.get(c, {}).get("relative_ndcg@10")
            row.append("–" if rel is None else f"{rel:.3f}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)

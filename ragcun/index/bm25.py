"""BM25 (lexical) retrieval with bm25s, and fusing it with dense retrieval.

BM25 (Robertson & Zaragoza 2009) with bm25s's defaults (Lucene's variant, k1 1.5, b 0.75) over lower-cased
word tokens with English stopwords removed and the Snowball English stemmer (PyStemmer) — the setting
whose SciFact test figure (nDCG@10 0.6863) the reference table quotes. Saved with bm25s's own format:
sparse score arrays as ``.npy`` written and read with ``allow_pickle=False``, the vocabulary and parameters
as JSON; no pickle anywhere.

Hybrid search fuses a dense and a BM25 ranking of the same documents:

- ``rrf`` (reciprocal-rank fusion, Cormack et al. 2009): score(d) = Σ_rankings 1 / (k_rrf + rank(d)), with
  k_rrf = 60 and ranks from 1; a document missing from a ranking contributes nothing from it;
- ``convex``: α · norm(dense) + (1 − α) · norm(bm25), each ranking's scores min–max normalised over its own
  candidate list (dense distances turned into similarities first); a missing document scores 0 there.

Both rank the union of the two candidate lists (each ``depth`` long).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np

BM25_DIR = "bm25"
RRF_K = 60
Fusion = Literal["rrf", "convex"]


def _tokenize(texts: list[str]):
    import bm25s
    import Stemmer

    return bm25s.tokenize(texts, stopwords="en", stemmer=Stemmer.Stemmer("english"), return_ids=False,
                          show_progress=False)


class BM25Index:
    """BM25 over a list of documents; row i is document i, as in the dense index."""

    def __init__(self, retriever=None, num_documents: int = 0):
        self.retriever = retriever
        self.num_documents = num_documents

    @classmethod
    def build(cls, texts: list[str]) -> BM25Index:
        import bm25s

        retriever = bm25s.BM25()
        retriever.index(_tokenize(list(texts)), show_progress=False)
        return cls(retriever, len(texts))

    def search(self, queries: list[str], top_k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), best first; higher is better. A query with no known word gets score-0 documents."""
        k = max(1, min(int(top_k), self.num_documents))
        ids, scores = self.retriever.retrieve(_tokenize(list(queries)), k=k, show_progress=False, n_threads=1)
        return np.asarray(scores, dtype=np.float32), np.asarray(ids, dtype=np.int64)

    def save(self, directory: str | os.PathLike) -> Path:
        path = Path(directory) / BM25_DIR
        self.retriever.save(str(path), allow_pickle=False)
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike) -> BM25Index:
        import bm25s

        retriever = bm25s.BM25.load(str(Path(directory) / BM25_DIR), allow_pickle=False, load_corpus=False)
        return cls(retriever, int(retriever.scores["num_docs"]))


def fuse(dense_ids: np.ndarray, dense_scores: np.ndarray, bm25_ids: np.ndarray, bm25_scores: np.ndarray,
         top_k: int, method: Fusion = "rrf", alpha: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Fused (scores, ids) per query, best first, from two rankings given as higher-is-better scores."""
    if method not in ("rrf", "convex"):
        raise ValueError(f"fusion must be rrf or convex, got {method!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"--hybrid_alpha must be in [0, 1], got {alpha}")
    out_scores, out_ids = [], []
    for d_ids, d_scores, b_ids, b_scores in zip(dense_ids, dense_scores, bm25_ids, bm25_scores):
        fused: dict[int, float] = {}
        for ids, scores, weight in ((d_ids, d_scores, alpha), (b_ids, b_scores, 1.0 - alpha)):
            keep = ids >= 0
            ids, scores = ids[keep], scores[keep]
            if method == "rrf":
                contributions = 1.0 / (RRF_K + np.arange(1, len(ids) + 1))
            else:
                span = float(scores.max() - scores.min()) if len(scores) else 0.0
                contributions = weight * ((scores - scores.min()) / span if span > 0 else np.ones_like(scores))
            for doc, value in zip(ids.tolist(), contributions.tolist()):
                fused[doc] = fused.get(doc, 0.0) + value
        ranked = sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:top_k]
        out_ids.append([doc for doc, _ in ranked] + [-1] * (top_k - len(ranked)))
        out_scores.append([score for _, score in ranked] + [float("-inf")] * (top_k - len(ranked)))
    return np.asarray(out_scores, dtype=np.float32), np.asarray(out_ids, dtype=np.int64)

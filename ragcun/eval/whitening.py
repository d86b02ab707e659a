"""Whitening post-process: the training-free way to make embeddings isotropic, used as a baseline.

BERT-whitening (Su et al., "Whitening Sentence Representations for Better Semantics and Faster Retrieval",
2021; also Huang et al., "WhiteningBERT", Findings of EMNLP 2021): fit the mean μ and covariance
Σ = U Λ Uᵀ of a set of embeddings (here: the corpus) and map every embedding x to

    x̃ = (x − μ) W,    W = U Λ^{-1/2}

so the fitted set has zero mean and identity covariance (IsoScore 1, effective rank D). Su et al. then rank
by cosine. Unlike SIGReg it changes no weights and makes only the first two moments Gaussian-like.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Whitening:
    mean: np.ndarray  # (D,)
    matrix: np.ndarray  # (D, k): U Λ^{-1/2}, columns by decreasing variance

    @classmethod
    def fit(cls, x: np.ndarray, num_components: int | None = None, eps: float = 1e-8) -> Whitening:
        """Fit on the rows of ``x``; ``num_components`` keeps the k largest-variance directions (Su et al.'s
        dimension reduction), all by default. ``eps`` guards directions with no variance."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"whitening needs at least 2 row vectors, got shape {x.shape}")
        mean = x.mean(axis=0)
        centred = x - mean
        eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred / len(x))
        order = np.argsort(eigenvalues)[::-1][: num_components or x.shape[1]]
        matrix = eigenvectors[:, order] / np.sqrt(np.maximum(eigenvalues[order], 0.0) + eps)
        return cls(mean=mean.astype(np.float32), matrix=matrix.astype(np.float32))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float32) - self.mean) @ self.matrix).astype(np.float32)

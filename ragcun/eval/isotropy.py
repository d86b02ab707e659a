"""Isotropy measures of an embedding cloud X ∈ R^{N×D} (rows are embeddings).

- **IsoScore** (Rudman et al., "IsoScore: Measuring the Uniformity of Embedding Space Utilization",
  Findings of ACL 2022). Reorient X by PCA, take the variance vector σ² of the reoriented cloud (the
  eigenvalues of the covariance), normalise it to length √D: σ̂ = √D · σ² / ‖σ²‖₂; its distance to the
  all-ones vector, δ = ‖σ̂ − 1‖₂ / √(2(D − √D)), gives φ = (D − δ²(D − √D))² / D² and
  IsoScore = (D·φ − 1) / (D − 1) ∈ [0, 1]: 1 when every direction has the same variance, 0 when one
  direction carries it all.
- **Effective rank** (Roy & Vetterli, "The effective rank: a measure of effective dimensionality", EUSIPCO
  2007): exp(H(p)) with p = λ / Σλ the normalised covariance eigenvalues and H the Shannon entropy; D for
  an isotropic cloud, 1 for a line.
- **Mean cosine** (Ethayarajh, "How Contextual are Contextualized Word Representations?", EMNLP 2019, as an
  anisotropy baseline): the average cosine similarity of distinct pairs; ≈ 0 for a centred isotropic cloud,
  → 1 when all embeddings point the same way. Computed exactly via ‖Σ x̂ᵢ‖² = Σᵢⱼ x̂ᵢ·x̂ⱼ.
- **Epps–Pulley** (Epps & Pulley, Biometrika 1983; SIGReg, Balestriero & LeCun 2025): the mean EP statistic
  of ``num_slices`` random unit projections against N(0, 1), exactly as in the SIGReg loss
  (:mod:`ragcun.losses.sigreg`): ≈ 1.06 for N(0, I) samples, ≈ 0.40·N for a collapsed cloud. Unlike the
  three above it also tests *scale* (unit variance) and *shape* (Gaussian marginals), not only isotropy.

Also reported: the mean per-dimension standard deviation and the norm of the mean (the centre's offset).
"""

from __future__ import annotations

import math

import numpy as np


def covariance_eigenvalues(x: np.ndarray) -> np.ndarray:
    """Eigenvalues of the (population) covariance of the rows of ``x``, descending, clipped at 0."""
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0, keepdims=True)
    cov = centred.T @ centred / max(1, len(x))
    return np.clip(np.linalg.eigvalsh(cov)[::-1], 0.0, None)


def isoscore(x: np.ndarray) -> float:
    eig = covariance_eigenvalues(x)
    d = len(eig)
    if d < 2 or not np.any(eig > 0):
        return 0.0
    normalised = math.sqrt(d) * eig / np.linalg.norm(eig)
    delta = np.linalg.norm(normalised - 1.0) / math.sqrt(2 * (d - math.sqrt(d)))
    phi = (d - delta**2 * (d - math.sqrt(d))) ** 2 / d**2
    return float((d * phi - 1) / (d - 1))


def effective_rank(x: np.ndarray) -> float:
    eig = covariance_eigenvalues(x)
    total = eig.sum()
    if total <= 0:
        return 0.0
    p = eig[eig > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def mean_cosine(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    n = len(unit)
    if n < 2:
        return 0.0
    total = float(np.square(unit.sum(axis=0)).sum())  # Σ_ij cos(i, j), the diagonal included
    return (total - n) / (n * (n - 1))


def epps_pulley_statistic(x: np.ndarray, num_slices: int = 1024, seed: int = 0) -> float:
    import torch

    from ragcun.losses.sigreg import epps_pulley, random_directions

    z = torch.as_tensor(np.asarray(x, dtype=np.float32))
    directions = random_directions(z.shape[1], num_slices, seed)
    return float(epps_pulley(z @ directions, sync_distributed=False).mean())


def isotropy_report(x: np.ndarray, num_slices: int = 1024, seed: int = 0) -> dict[str, float]:
    """All measures of the module docstring for one cloud."""
    x = np.asarray(x, dtype=np.float32)
    return {
        "isoscore": isoscore(x),
        "effective_rank": effective_rank(x),
        "mean_cosine": mean_cosine(x),
        "epps_pulley": epps_pulley_statistic(x, num_slices, seed),
        "mean_std": float(x.std(axis=0).mean()),
        "mean_norm": float(np.linalg.norm(x.mean(axis=0))),
        "dim": int(x.shape[1]),
        "num_vectors": int(x.shape[0]),
    }

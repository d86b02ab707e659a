"""Isotropy measures against hand-worked values (ragcun/eval/isotropy.py's docstring has the definitions)."""

from __future__ import annotations

import numpy as np
import pytest

from ragcun.eval.isotropy import effective_rank, epps_pulley_statistic, isoscore, isotropy_report, mean_cosine


def axis_cloud(k: int, d: int) -> np.ndarray:
    """Rows ±e_1 … ±e_k in R^d: covariance exactly diag(1/k, …, 1/k, 0, …, 0)."""
    eye = np.eye(d)[:k]
    return np.concatenate([eye, -eye])


@pytest.mark.parametrize("k, d", [(1, 8), (4, 16), (16, 16)])
def test_isoscore_and_effective_rank_of_k_equal_directions(k, d):
    x = axis_cloud(k, d)
    # IsoScore of k equal-variance directions out of d is (k - 1) / (d - 1) (phi = k / d); effective rank is k.
    assert isoscore(x) == pytest.approx((k - 1) / (d - 1), abs=1e-9)
    assert effective_rank(x) == pytest.approx(k, rel=1e-9)


def test_mean_cosine_hand_worked():
    # ±e_i: each vector has cosine -1 with its opposite and 0 with the rest: -2k / (2k (2k - 1)).
    assert mean_cosine(axis_cloud(3, 5)) == pytest.approx(-1 / 5)
    same = np.tile([[1.0, 2.0, 3.0]], (10, 1))
    assert mean_cosine(same) == pytest.approx(1.0)
    x = np.random.default_rng(0).standard_normal((50, 6))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    brute = np.mean([unit[i] @ unit[j] for i in range(50) for j in range(50) if i != j])
    assert mean_cosine(x) == pytest.approx(brute)


def test_gaussian_versus_anisotropic_clouds():
    rng = np.random.default_rng(0)
    gaussian = rng.standard_normal((4000, 32)).astype(np.float32)
    report = isotropy_report(gaussian, num_slices=256)
    assert report["isoscore"] > 0.95 and report["effective_rank"] > 30
    assert abs(report["mean_cosine"]) < 0.01 and report["epps_pulley"] == pytest.approx(1.06, abs=0.15)
    # Shrunk (std 0.2): isotropic still, but far from N(0, I) — only Epps–Pulley sees the scale.
    shrunk = 0.2 * gaussian
    assert isoscore(shrunk) == pytest.approx(report["isoscore"], abs=1e-6)
    assert epps_pulley_statistic(shrunk, 256) > 20 * report["epps_pulley"]
    # A common offset (the anisotropy of pre-trained encoders) raises the mean cosine.
    assert mean_cosine(gaussian + 3.0) > 0.8



def test_l2_and_cosine_agree_on_an_isotropic_gaussian_and_not_on_spread_norms():
    # For z ~ N(0, I_D) the norm concentrates at √D (relative spread ≈ 1/√(2D)), so ‖q − d‖² = ‖q‖² + ‖d‖²
    # − 2 q·d ranks the document a query came from where its cosine does. Spread the norms (log-normal) and
    # L2 starts to prefer short vectors: the two rankings part, and L2 loses what cosine keeps.
    from ragcun.index.faiss_index import exact_search

    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((3000, 384)).astype(np.float32)
    queries = corpus[:200] + 4.0 * rng.standard_normal((200, 384)).astype(np.float32)  # query i ↔ document i
    norms = np.exp(rng.normal(0.0, 0.5, size=(3000, 1))).astype(np.float32)
    found = {}
    for name, cloud in (("gaussian", corpus), ("spread", corpus * norms)):
        _, by_l2 = exact_search(cloud, queries, 1, "l2")
        _, by_cosine = exact_search(cloud, queries, 1, "cosine")
        found[name] = (np.mean(by_l2[:, 0] == np.arange(200)), np.mean(by_cosine[:, 0] == np.arange(200)),
                       np.mean(by_l2[:, 0] == by_cosine[:, 0]))
    l2, cosine, same_top = found["gaussian"]
    assert same_top >= 0.97 and abs(l2 - cosine) <= 0.01 and 0.8 < cosine < 1.0
    l2, cosine, same_top = found["spread"]
    assert same_top < 0.9 and l2 < cosine - 0.05

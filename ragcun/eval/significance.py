"""Paired significance of a difference in a per-query metric: the sign-flip (randomisation) test.

Two systems ranked the same queries; d_q = a_q − b_q is their per-query difference (averaged over seeds when
both were trained with the same seeds). Under the null hypothesis that the systems are exchangeable, each
d_q is as likely to be +|d_q| as −|d_q|, so the distribution of the mean difference under the null is that
of mean(s_q · d_q) over random signs s_q ∈ {−1, +1}. The two-sided p-value is the fraction of sign patterns
whose |mean| is at least the observed |mean|: enumerated exactly for up to 16 queries, else estimated from
``num_samples`` random patterns with the observed one counted in, (hits + 1) / (samples + 1), which never
reports p = 0 (Smucker, Allan & Carterette, "A comparison of statistical significance tests for information
retrieval evaluation", CIKM 2007).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np

EXACT_UP_TO = 16


def sign_flip_p_value(differences: Sequence[float] | np.ndarray, num_samples: int = 100_000, seed: int = 0) -> float:
    """Two-sided p-value of the mean of paired ``differences`` being 0 (see the module docstring)."""
    d = np.asarray(differences, dtype=np.float64)
    if d.ndim != 1 or len(d) == 0:
        raise ValueError(f"need a non-empty 1-D array of differences, got shape {d.shape}")
    observed = abs(d.mean())
    tolerance = 1e-12 * max(1.0, float(np.abs(d).max()))  # ties within float error count as "at least"
    if len(d) <= EXACT_UP_TO:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))
        return float(np.mean(np.abs(signs @ d) / len(d) >= observed - tolerance))
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, num_samples, 10_000):
        signs = rng.choice((-1.0, 1.0), size=(min(10_000, num_samples - start), len(d)))
        hits += int(np.sum(np.abs(signs @ d) / len(d) >= observed - tolerance))
    return (hits + 1) / (num_samples + 1)


def paired_differences(
    a: Sequence[Mapping[str, float]], b: Sequence[Mapping[str, float]]
) -> dict[str, float]:
    """Per query, the mean over paired runs (a[i] with b[i], e.g. the same seed) of a − b.

    Every run must score the same queries: a query missing from one would silently change the test.
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"need the same number (≥ 1) of runs on both sides, got {len(a)} and {len(b)}")
    queries = set(a[0])
    for run in (*a, *b):
        if set(run) != queries:
            missing = sorted(queries ^ set(run))[:3]
            raise ValueError(f"the paired runs score different queries (e.g. {missing})")
    return {q: float(np.mean([x[q] - y[q] for x, y in zip(a, b)])) for q in sorted(queries)}

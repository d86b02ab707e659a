"""The paired sign-flip test against values enumerated by hand and against a brute-force reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ragcun.eval.significance import paired_differences, sign_flip_p_value


def test_p_value_by_hand():
    # d = (1, 2, 3): the 8 sign patterns give |mean| 2, 4/3, 2/3, 0, 0, 2/3, 4/3, 2; only (+,+,+) and
    # (−,−,−) reach the observed 2.
    assert sign_flip_p_value([1.0, 2.0, 3.0]) == pytest.approx(2 / 8)
    # d = (1, −1): patterns give |mean| 0, 1, 1, 0 and the observed mean is 0: every pattern reaches it.
    assert sign_flip_p_value([1.0, -1.0]) == pytest.approx(1.0)
    assert sign_flip_p_value([0.5]) == pytest.approx(1.0)


def test_monte_carlo_agrees_with_enumeration():
    rng = np.random.default_rng(3)
    d = rng.normal(0.3, 1.0, size=18)  # 2^18 patterns: enumerated here by brute force, sampled by the function
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))
    exact = float(np.mean(np.abs(signs @ d) >= abs(d.sum()) - 1e-9))
    assert sign_flip_p_value(d, num_samples=200_000, seed=1) == pytest.approx(exact, abs=0.005)


def test_a_clear_difference_is_significant_and_noise_is_not():
    rng = np.random.default_rng(0)
    assert sign_flip_p_value(rng.normal(0.2, 0.3, size=300), num_samples=20_000) < 0.001
    assert sign_flip_p_value(rng.normal(0.0, 0.3, size=300), num_samples=20_000) > 0.01


def test_paired_differences_average_over_seeds():
    a = [{"q1": 0.5, "q2": 1.0}, {"q1": 0.7, "q2": 0.0}]
    b = [{"q1": 0.4, "q2": 0.5}, {"q1": 0.4, "q2": 0.5}]
    assert paired_differences(a, b) == pytest.approx({"q1": 0.2, "q2": 0.0})


def test_paired_differences_refuse_different_queries():
    with pytest.raises(ValueError, match="different queries"):
        paired_differences([{"q1": 1.0}], [{"q2": 1.0}])
    with pytest.raises(ValueError, match="same number"):
        paired_differences([{"q1": 1.0}], [])

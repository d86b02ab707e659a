"""SIGReg / Epps–Pulley against independent computations and the sanity values of its quadrature."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ragcun.losses.sigreg import SIGRegLoss, epps_pulley, random_directions


def reference_ep(x: np.ndarray, num_knots: int = 17, t_max: float = 3.0) -> np.ndarray:
    """The statistic written from the definition with complex arithmetic over the full [-t_max, t_max]."""
    t = np.linspace(-t_max, t_max, 2 * num_knots - 1)
    ecf = np.exp(1j * np.outer(x.reshape(-1), t).reshape(*x.shape, -1)).mean(axis=0)  # (M, T)
    integrand = np.abs(ecf - np.exp(-(t**2) / 2)) ** 2 * np.exp(-(t**2) / 2)
    return x.shape[0] * np.trapezoid(integrand, t, axis=-1)


def test_matches_definition_with_complex_numbers():
    rng = np.random.default_rng(0)
    x = rng.normal(0.3, 1.4, size=(50, 7))
    ours = epps_pulley(torch.tensor(x, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(ours, reference_ep(x), rtol=1e-5)


def test_gaussian_samples_give_about_one():
    """E[EP] = ∫(1 − e^{−t²}) e^{−t²/2} dt ≈ 1.06 at any N (0.95–1.14 over 256 slices)."""
    torch.manual_seed(0)
    loss = SIGRegLoss(num_slices=256)
    for step, n in enumerate([32, 128, 512, 1024]):
        value = float(loss(torch.randn(n, 64), step=step))
        assert 0.9 < value < 1.2, (n, value)
    # Averaged over many draws the mean is the analytic value (trapezoid with 17 knots: 1.0594).
    values = [float(loss(torch.randn(256, 32), step=s)) for s in range(80)]
    assert abs(np.mean(values) - 1.06) < 0.05


def test_collapsed_cloud_gives_0402_n():
    loss = SIGRegLoss(num_slices=64)
    for n in (16, 100, 1000):
        assert float(loss(torch.zeros(n, 32))) / n == pytest.approx(0.402, abs=0.001)


def test_shifted_or_scaled_clouds_score_worse_than_gaussian():
    torch.manual_seed(1)
    loss = SIGRegLoss(num_slices=128)
    z = torch.randn(512, 32)
    gaussian = float(loss(z))
    assert float(loss(0.1 * z)) > 20 * gaussian  # the base MiniLM's scale (std ≈ 0.1)
    assert float(loss(z + 2.0)) > 20 * gaussian


def test_directions_are_unit_and_depend_only_on_the_seed():
    a = random_directions(16, 8, seed=5)
    assert torch.allclose(a.norm(dim=0), torch.ones(8))
    assert torch.equal(a, random_directions(16, 8, seed=5))
    assert not torch.equal(a, random_directions(16, 8, seed=6))


def test_new_slices_every_step():
    torch.manual_seed(2)
    z = torch.randn(64, 16)
    loss = SIGRegLoss(num_slices=8)
    assert float(loss(z, step=0)) != float(loss(z, step=1))
    assert float(loss(z, step=3)) == float(loss(z, step=3))


def test_float32_under_bf16_autocast_and_finite_gradient():
    z = torch.randn(32, 16, requires_grad=True)
    loss = SIGRegLoss(num_slices=32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(z.to(torch.bfloat16))
    assert value.dtype == torch.float32
    value.backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_gradient_descent_moves_towards_gaussian():
    torch.manual_seed(3)
    z = (0.2 * torch.randn(256, 8) + 1.0).requires_grad_(True)
    loss = SIGRegLoss(num_slices=64)
    opt = torch.optim.Adam([z], lr=0.05)
    first = float(loss(z.detach(), step=0))
    for step in range(200):
        opt.zero_grad()
        loss(z, step=step).backward()
        opt.step()
    assert float(loss(z, step=999)) < 0.2 * first
    assert abs(float(z.detach().std()) - 1.0) < 0.25

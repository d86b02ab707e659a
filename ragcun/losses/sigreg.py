"""SIGReg: Sketched Isotropic Gaussian Regularisation (LeJEPA).

Reference: R. Balestriero and Y. LeCun, "LeJEPA: Provable and Scalable Self-Supervised Learning Without
the Heuristics", arXiv:2511.08544 (2025). Epps–Pulley test: T. W. Epps and L. B. Pulley, "A test for
normality based on the empirical characteristic function", Biometrika 70(3), 1983.

For embeddings Z ∈ R^{N×D} draw M random unit directions A ∈ R^{D×M} and project, x = Z·A ∈ R^{N×M}.
For every slice m the Epps–Pulley statistic against N(0, 1) is

    EP_m = N · ∫_{-∞}^{∞} |φ̂_m(t) − e^{−t²/2}|² · e^{−t²/2} dt,      φ̂_m(t) = (1/N) Σ_n exp(i·t·x_nm)

with |φ̂ − φ|² = (mean cos(t x) − e^{−t²/2})² + (mean sin(t x))². The integrand is even in t, so the
integral is 2·∫_0^{t_max}, taken by the trapezoid rule on ``num_knots`` knots (default t ∈ [0, 3], 17
knots). SIGReg = mean_m EP_m.

Sanity values for this quadrature: E[EP] = ∫(1 − e^{−t²}) e^{−t²/2} dt ≈ 1.06 for Z ~ N(0, I) at any N,
and ≈ 0.402·N when every row of Z is the same point at the origin (a collapsed cloud).

Distributed: every rank must use the same directions (they are drawn from a generator seeded with the
global step), and the cos/sin *sums* and the row count are all-reduced with the autograd-aware
``torch.distributed.nn.functional.all_reduce``. Its backward all-reduces the gradient again, so after DDP
averages parameter gradients over W ranks the result equals the gradient of SIGReg on the concatenated
global batch (tested in tests/losses/test_distributed.py).

Inputs: ``embeddings`` (N, D) float tensor; ``step`` (int) selects the slices. Output: scalar tensor.
Computed in float32 with autocast disabled whatever the surrounding precision.
"""

from __future__ import annotations

import torch
from torch import nn

from ragcun.losses.distributed import all_reduce_sum_with_grad, is_distributed


def random_directions(dim: int, num_slices: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Unit-norm Gaussian directions (dim × num_slices), identical on every rank for the same seed."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    directions = torch.randn(dim, num_slices, generator=generator, dtype=torch.float32)
    directions = directions / directions.norm(dim=0, keepdim=True)
    return directions.to(device)


def epps_pulley(
    projections: torch.Tensor,
    num_knots: int = 17,
    t_max: float = 3.0,
    sync_distributed: bool = True,
) -> torch.Tensor:
    """Epps–Pulley statistic of each column of ``projections`` (N × M) against N(0, 1); returns (M,).

    With ``sync_distributed`` and an initialised process group, the empirical characteristic function is
    that of the rows of all ranks together, and N is the global row count.
    """
    x = projections.float()
    t = torch.linspace(0.0, t_max, num_knots, device=x.device, dtype=torch.float32)
    tx = x.unsqueeze(-1) * t  # (N, M, T)
    cos_sum = torch.cos(tx).sum(dim=0)  # (M, T)
    sin_sum = torch.sin(tx).sum(dim=0)
    count = torch.tensor(float(x.shape[0]), device=x.device)
    if sync_distributed and is_distributed():
        cos_sum, sin_sum = all_reduce_sum_with_grad(cos_sum), all_reduce_sum_with_grad(sin_sum)
        count = all_reduce_sum_with_grad(count)
    gaussian_cf = torch.exp(-0.5 * t**2)
    sq_error = (cos_sum / count - gaussian_cf) ** 2 + (sin_sum / count) ** 2
    integrand = sq_error * gaussian_cf  # (M, T)
    # Trapezoid on [0, t_max], doubled for the symmetric half [-t_max, 0].
    dt = t_max / (num_knots - 1)
    weights = torch.full((num_knots,), dt, device=x.device)
    weights[0] = weights[-1] = dt / 2
    return 2.0 * count * (integrand * weights).sum(dim=-1)


class SIGRegLoss(nn.Module):
    """Mean Epps–Pulley statistic over ``num_slices`` random 1-D projections (see the module docstring)."""

    def __init__(self, num_slices: int = 1024, num_knots: int = 17, t_max: float = 3.0, seed: int = 0,
                 sync_distributed: bool = True):
        super().__init__()
        self.sync_distributed = sync_distributed
        self.num_slices = num_slices
        self.num_knots = num_knots
        self.t_max = t_max
        self.seed = seed

    def forward(self, embeddings: torch.Tensor, step: int = 0) -> torch.Tensor:
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            z = embeddings.float()
            # A new set of directions every step, the same on every rank: seed from the global step.
            directions = random_directions(z.shape[1], self.num_slices, self.seed * 1_000_003 + step, z.device)
            return epps_pulley(z @ directions, self.num_knots, self.t_max, self.sync_distributed).mean()

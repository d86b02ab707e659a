"""Per-dimension variance hinge (VICReg's variance term).

Reference: A. Bardes, J. Ponce, Y. LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", ICLR 2022, eq. (1).

    L_var(Z) = (1/D) Σ_j relu(γ − sqrt(Var(Z_{:,j}) + ε)),     γ = 1 (the N(0, I) target), ε = 1e-4

Var is the unbiased per-dimension variance over the batch. It is zero once every dimension has std ≥ γ,
so it only acts against (partial) collapse, typically early in training; ``--lambda_variance`` weights it.

Inputs: ``embeddings`` (N, D), N ≥ 2. Output: scalar tensor.
"""

from __future__ import annotations

import torch
from torch import nn


class VarianceLoss(nn.Module):
    def __init__(self, target_std: float = 1.0, eps: float = 1e-4):
        super().__init__()
        self.target_std = target_std
        self.eps = eps

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        z = embeddings.float()
        if z.shape[0] < 2:
            return z.sum() * 0.0  # a variance needs two rows; keep the graph
        std = torch.sqrt(z.var(dim=0) + self.eps)
        return torch.relu(self.target_std - std).mean()

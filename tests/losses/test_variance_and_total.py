from __future__ import annotations

import pytest
import torch

from ragcun.config import LossConfig
from ragcun.losses import GaussianEmbeddingLoss, SIGRegLoss, VarianceLoss


def test_variance_hinge_by_hand():
    z = torch.tensor([[0.0, 0.0], [2.0, 0.2]])  # unbiased std per dim: sqrt(2) and sqrt(0.02)
    expected = (max(0.0, 1 - (2.0 + 1e-4) ** 0.5) + (1 - (0.02 + 1e-4) ** 0.5)) / 2
    assert float(VarianceLoss()(z)) == pytest.approx(expected, rel=1e-6)
    assert float(VarianceLoss()(3 * torch.randn(500, 4))) == 0.0


def test_total_is_the_weighted_sum_of_its_parts():
    torch.manual_seed(0)
    q, p, n = torch.randn(8, 6), torch.randn(8, 6), torch.randn(8, 6)
    cfg = LossConfig(lambda_contrastive=0.7, lambda_isotropy=0.3, lambda_variance=0.2, num_slices=16)
    out = GaussianEmbeddingLoss(cfg)(q, p, n, step=4)
    expected = 0.7 * out["contrastive"] + 0.3 * out["sigreg"] + 0.2 * out["variance"]
    assert float(out["total"]) == pytest.approx(float(expected), rel=1e-6)
    docs = torch.cat([p, n])
    sig = SIGRegLoss(16)
    assert float(out["sigreg"]) == pytest.approx(0.5 * float(sig(q, 4) + sig(docs, 4)), rel=1e-6)
    assert float(out["variance"]) == pytest.approx(0.5 * float(VarianceLoss()(q) + VarianceLoss()(docs)), rel=1e-6)
    assert float(out["embedding_std"]) == pytest.approx(float(torch.cat([q, docs]).std(0).mean()), rel=1e-6)
    assert set(out) == {"total", "contrastive", "sigreg", "variance", "pos_distance", "embedding_std"}


def test_zero_weights_skip_terms():
    q = torch.randn(4, 3)
    out = GaussianEmbeddingLoss(LossConfig(lambda_isotropy=0.0, lambda_variance=0.0))(q, q + 0.1, None)
    assert float(out["sigreg"]) == 0.0 and float(out["variance"]) == 0.0
    assert float(out["total"]) == pytest.approx(float(out["contrastive"]))


def test_triplet_form_selected_by_config():
    q, p, n = torch.zeros(2, 2), torch.ones(2, 2), 5 * torch.ones(2, 2)
    out = GaussianEmbeddingLoss(LossConfig(loss="triplet", margin=1.0, lambda_isotropy=0, lambda_variance=0))(q, p, n)
    assert float(out["contrastive"]) == pytest.approx(0.0, abs=1e-6)


def test_bad_loss_config_is_rejected():
    with pytest.raises(ValueError, match="loss must be"):
        LossConfig(loss="cosine")
    with pytest.raises(ValueError, match="temperature"):
        LossConfig(temperature=0)

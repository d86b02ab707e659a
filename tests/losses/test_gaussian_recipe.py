"""The Gaussian recipe's parts: a distance scale that makes τ mean the same at any width and any global
scale, a learnable head scale that SIGReg moves and the contrastive term cannot, and a whitened head."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ragcun.config import LossConfig, ModelConfig
from ragcun.losses import GaussianEmbeddingLoss
from ragcun.losses.contrastive import InfoNCELoss
from ragcun.losses.sigreg import SIGRegLoss
from ragcun.model import GaussianEmbeddingModel

from ..conftest import SAMPLE_DOCS


def _cloud(n: int, dim: int, seed: int = 0, std: float = 1.0) -> torch.Tensor:
    return std * torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("dim", [16, 256, 2048])
def test_dim_scale_keeps_unrelated_logits_near_minus_one_over_tau(dim):
    """Two independent N(0, I_D) clouds: E‖q − d‖² = 2D, so with S = 2D the logits average −1/τ at every D
    (with S = 1 they would average −2D/τ: −4096 at D 2048)."""
    tau = 0.1
    q, d = _cloud(256, dim, 0), _cloud(256, dim, 1)
    logits = InfoNCELoss(temperature=tau, distance_scale="dim").logits(q, d)
    assert float(logits.mean()) == pytest.approx(-1 / tau, rel=0.05)
    assert float(InfoNCELoss(temperature=tau).logits(q, d).mean()) == pytest.approx(-2 * dim / tau, rel=0.05)


def test_batch_scale_makes_the_contrastive_loss_blind_to_a_global_scale():
    q, p, n = _cloud(8, 32, 0), _cloud(8, 32, 1), _cloud(8, 32, 2)
    p = q + 0.5 * p  # related pairs
    loss = InfoNCELoss(temperature=0.1, distance_scale="batch")
    base = float(loss(q, p, n)["loss"])
    for c in (0.01, 0.3, 7.0):
        assert float(loss(c * q, c * p, c * n)["loss"]) == pytest.approx(base, rel=1e-4)
    assert float(InfoNCELoss(temperature=0.1)(3 * q, 3 * p, 3 * n)["loss"]) != pytest.approx(base, rel=1e-2)


def _scaled_model(tiny_bert_dir) -> GaussianEmbeddingModel:
    torch.manual_seed(0)
    return GaussianEmbeddingModel.from_config(ModelConfig(base_model=tiny_bert_dir, output_dim=8, learn_scale=True))


def _encode_train(model, texts, kind):
    batch = model.tokenize(texts, kind)
    return model(**batch)


def test_sigreg_moves_the_head_scale_and_the_batch_scaled_contrastive_term_does_not(tiny_bert_dir):
    from ragcun.head_init import fit_head

    model = _scaled_model(tiny_bert_dir).eval()
    words = ("cats", "python", "heart", "gene", "virus", "drug", "brain", "data")
    docs = [f"{d} {w}" for d in SAMPLE_DOCS for w in words[:4]]
    fit_head(model, docs, "whiten")  # centred, unit covariance...
    with torch.no_grad():
        model.head_log_scale.fill_(math.log(0.05))  # ...then far narrower than N(0, I)
    q = _encode_train(model, [f"what about {w} {v}" for w in words for v in ("risk", "effect", "model")], "query")
    p = _encode_train(model, docs, "document")
    contrastive = GaussianEmbeddingLoss(LossConfig(lambda_isotropy=0.0, lambda_variance=0.0, temperature=0.1,
                                                   distance_scale="batch"), distributed=False)
    contrastive(q, p)["total"].backward(retain_graph=True)
    assert abs(float(model.head_log_scale.grad)) < 1e-5  # exactly invariant: no pull on the scale
    assert float(model.head.weight.grad.abs().sum()) > 0
    model.zero_grad()
    SIGRegLoss(num_slices=64, sync_distributed=False)(p).backward()  # on the cloud the head was fitted to
    # SIGReg asks for a larger scale (a negative gradient on log s).
    assert float(model.head_log_scale.grad) < 0


def test_at_its_optimum_scale_sigreg_equals_its_value_on_the_standardised_cloud():
    sigreg = SIGRegLoss(num_slices=128)
    z = _cloud(1024, 16, 3, std=0.1)  # a centred Gaussian of the wrong size
    log_c = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.Adam([log_c], lr=0.05)
    for _ in range(150):
        optimizer.zero_grad()
        sigreg(z * log_c.exp()).backward()
        optimizer.step()
    c = float(log_c.detach().exp())
    assert c == pytest.approx(1 / float(z.std()), rel=0.05)
    standardised = float(sigreg(z / z.std()))
    assert float(sigreg(z * c)) == pytest.approx(standardised, abs=0.05)
    assert standardised < 2.0 and float(sigreg(z)) > 100  # N(0, I)-like vs a collapsed-looking cloud


@pytest.mark.parametrize("learn_scale", [True, False])
def test_scale_init_centres_and_scales_without_changing_the_ranking(tiny_bert_dir, learn_scale):
    from ragcun.head_init import fit_head

    torch.manual_seed(0)
    model = GaussianEmbeddingModel.from_config(ModelConfig(base_model=tiny_bert_dir, output_dim=None,
                                                           head_init="scale", learn_scale=learn_scale))
    texts = [f"{d} {w}" for d in SAMPLE_DOCS for w in ("fast", "slow", "vector", "cell", "risk", "data")]
    before = model.encode(texts).astype(np.float64)
    fit_head(model, texts, "scale")
    z = model.encode(texts).astype(np.float64)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-4)
    assert z.var(axis=0).mean() == pytest.approx(1.0, rel=1e-3)
    ratio = np.linalg.norm(z[1:] - z[:-1], axis=1) / np.linalg.norm(before[1:] - before[:-1], axis=1)
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-4)  # every distance scaled alike: the same ranking
    if learn_scale:
        assert float(model.head_log_scale) == pytest.approx(-np.log(np.sqrt(before.var(axis=0).mean())), rel=1e-3)


@pytest.mark.parametrize("mode", ["whiten", "standardize"])
def test_fitted_head_gives_zero_mean_and_unit_covariance_on_its_sample(tiny_bert_dir, mode):
    from ragcun.head_init import fit_head

    torch.manual_seed(0)
    out_dim = 8 if mode == "whiten" else None
    model = GaussianEmbeddingModel.from_config(ModelConfig(base_model=tiny_bert_dir, output_dim=out_dim,
                                                           head_init=mode, learn_scale=True))
    texts = [f"{d} {w}" for d in SAMPLE_DOCS for w in ("fast", "slow", "vector", "cell", "risk", "data")]
    fit_head(model, texts, mode)
    z = model.encode(texts).astype(np.float64)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-3)
    if mode == "whiten":
        np.testing.assert_allclose(np.cov(z, rowvar=False, bias=True), np.eye(8), atol=1e-3)
    else:
        np.testing.assert_allclose(z.std(axis=0), 1.0, atol=1e-3)


def test_whitening_needs_enough_documents(tiny_bert_dir):
    from ragcun.head_init import fit_head

    model = GaussianEmbeddingModel.from_config(ModelConfig(base_model=tiny_bert_dir, output_dim=16))
    with pytest.raises(ValueError, match="cannot fit 16 whitened directions"):
        fit_head(model, SAMPLE_DOCS, "whiten")


def test_export_folds_the_learned_scale_into_the_dense_layer(tiny_bert_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    model = _scaled_model(tiny_bert_dir)
    with torch.no_grad():
        model.head_log_scale.fill_(math.log(3.0))
    st = SentenceTransformer(str(model.export_sentence_transformers(tmp_path / "st")), device="cpu")
    np.testing.assert_allclose(st.encode_document(SAMPLE_DOCS), model.encode(SAMPLE_DOCS), atol=1e-4)

"""Fitted head initialisations: start training near N(0, I) instead of at the base model's narrow cloud.

The base MiniLM's corpus embeddings have a per-dimension std of about 0.11 and a covariance whose spectrum
falls over two decades (IsoScore 0.17). A head fitted on the base model's pooled features h of a sample of
the training documents maps them to zero mean and

- ``whiten``: identity covariance (PCA whitening, Su et al. 2021): W = Λ_k^{-1/2} U_kᵀ, b = −W μ, with
  Σ = U Λ Uᵀ the features' covariance and k = output_dim its largest-variance directions;
- ``standardize``: unit variance per feature (W = diag(1/σ), b = −μ/σ; output_dim must equal the width),
  which keeps the feature axes and their correlations;
- ``scale``: only a global affine map, z = (h − μ)/σ̄ with σ̄² the mean per-feature variance (output_dim must
  equal the width). An L2 ranking is unchanged by it, so training starts at the base model's exact ranking
  with a centred cloud of mean variance 1; with ``learn_scale`` the 1/σ̄ is the learnable scale's start.

The untrained whitened model loses retrieval quality (BERT-whitening on SciFact: −5.6 nDCG@10 points); the
fine-tuning that follows must win it back while SIGReg keeps the cloud Gaussian.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

import numpy as np
import torch

from ragcun.eval.whitening import Whitening
from ragcun.model import GaussianEmbeddingModel

logger = logging.getLogger(__name__)
DEFAULT_SAMPLE = 4096


def fit_head(model: GaussianEmbeddingModel, texts: Sequence[str], mode: str, batch_size: int = 64) -> dict[str, float]:
    """Set ``model``'s head from the pooled features of ``texts`` (documents); returns the fit's summary."""
    features = model.encode(list(texts), "document", batch_size=batch_size, before_head=True)
    width, out_dim = features.shape[1], model.output_dim
    if mode == "whiten":
        if len(features) < out_dim + 1:
            raise ValueError(f"--head_init whiten: {len(features)} documents cannot fit {out_dim} whitened "
                             "directions; give more training documents or a smaller --output_dim")
        fit = Whitening.fit(features, num_components=out_dim)
        weight, bias = fit.matrix.T, -(fit.mean @ fit.matrix)
    elif mode == "standardize":
        if out_dim != width:
            raise ValueError(f"--head_init standardize needs output_dim == the backbone width ({width})")
        mean, std = features.mean(axis=0), features.std(axis=0) + 1e-8
        weight, bias = np.diag(1.0 / std), -mean / std
    elif mode == "scale":
        if out_dim != width:
            raise ValueError(f"--head_init scale needs output_dim == the backbone width ({width})")
        mean, spread = features.mean(axis=0), float(np.sqrt(features.var(axis=0).mean())) + 1e-8
        weight, bias = np.eye(width) / spread, -mean / spread
    else:
        raise ValueError(f"not a fitted head init: {mode!r}")
    log_scale = 0.0
    if mode == "scale" and model.head_log_scale is not None:  # the global factor lives in the learnable scale
        weight, bias, log_scale = weight * spread, bias * spread, -float(np.log(spread))
    with torch.no_grad():
        model.head.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        model.head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
        if model.head_log_scale is not None:
            model.head_log_scale.fill_(log_scale)
    logger.info("head fitted (%s) on %d documents: %d → %d", mode, len(features), width, out_dim)
    return {"num_documents": len(features), "feature_std": float(features.std(axis=0).mean())}


def sample_documents(triplets: Sequence[dict], size: int = DEFAULT_SAMPLE, seed: int = 0) -> list[str]:
    """Distinct positive and negative texts of the training triplets, a random sample of at most ``size``."""
    seen: dict[str, None] = {}
    for t in triplets:
        for role in ("positive", "negative"):
            text = t.get(role)
            if isinstance(text, str) and text.strip():
                seen.setdefault(text, None)
    docs = list(seen)
    random.Random(seed).shuffle(docs)
    return docs[:size]


def write_fitted_start(job, triplets: Sequence[dict], path) -> str:
    """The starting checkpoint of a run whose ``head_init`` is fitted: the base model with its head fitted on
    a sample of the training documents in ``triplets`` (seeded by the run's seed), saved at ``path``."""
    torch.manual_seed(job.train.seed)
    model = GaussianEmbeddingModel.from_config(job.model)
    docs = sample_documents(triplets, seed=job.train.seed)
    fit_head(model, docs, job.model.head_init)
    model.save_checkpoint(path)
    return str(path)

"""The Gaussian embedding objective: the weighted sum that the trainer minimises.

    L = λ_c · L_contrastive(q, p, n) + λ_iso · ½ (SIGReg(q) + SIGReg([p; n])) + λ_reg · ½ (V(q) + V([p; n]))

SIGReg and the variance hinge V are applied to queries and to documents separately, because each set
should on its own be distributed as N(0, I). A term whose weight is 0 is not computed.

Scale and shape. An L2 ranking does not change when every embedding is multiplied by c, yet SIGReg's
target N(0, I) fixes the scale, and the base MiniLM's cloud has a per-dimension std of about 0.11: with a
plain InfoNCE (S = 1, fixed τ) SIGReg can only reach std 1 by fighting the contrastive term, which then
sees its squared distances grow ~80-fold at a fixed temperature. The Gaussian recipe separates the two:

- the model's head ends in a learnable global scale exp(s) (``ModelConfig.learn_scale``), so the cloud's
  size is one weight. For a centred cloud z and c = exp(s), SIGReg(c·z) is minimised near c = 1/σ(z) —
  there it equals SIGReg of the standardised cloud z/σ(z) — so at the optimum SIGReg measures only shape;
- the contrastive term divides squared distances by the batch's own spread (``distance_scale="batch"``,
  see :class:`~ragcun.losses.contrastive.InfoNCELoss`), so it is exactly invariant to c and leaves the
  scale entirely to SIGReg, with τ meaning the same at any width and any scale;
- the head starts whitened (``head_init="whiten"``, :mod:`ragcun.head_init`), at zero mean and identity
  covariance, instead of at std 0.11.

Returns a dict of scalars: ``total`` (the one to backpropagate), its terms ``contrastive``, ``sigreg``,
``variance`` (unweighted), and the detached diagnostics named in ``DIAGNOSTICS``: ``pos_distance`` (mean
‖q − p‖) and ``embedding_std`` (mean per-dimension std of all embeddings in the batch; the target is 1).
The training loop logs whatever it returns.
"""

from __future__ import annotations

import torch
from torch import nn

from ragcun.config import LossConfig
from ragcun.losses.contrastive import InfoNCELoss, TripletLoss
from ragcun.losses.sigreg import SIGRegLoss
from ragcun.losses.variance import VarianceLoss

# Parts of the returned dict that are measurements, not terms of the loss.
DIAGNOSTICS = ("pos_distance", "embedding_std")


class GaussianEmbeddingLoss(nn.Module):
    def __init__(self, config: LossConfig | None = None, distributed: bool = True):
        """``distributed=False`` keeps every term local to this process (e.g. rank-0-only validation)."""
        super().__init__()
        self.config = config or LossConfig()
        c = self.config
        if c.loss == "infonce":
            self.contrastive = InfoNCELoss(temperature=c.temperature, margin=c.margin, gather_across_ranks=distributed,
                                           distance_scale=c.distance_scale)
        else:
            self.contrastive = TripletLoss(margin=c.margin)
        self.sigreg = SIGRegLoss(c.num_slices, c.num_knots, c.sigreg_t_max, c.slice_seed, sync_distributed=distributed)
        self.variance = VarianceLoss(target_std=c.variance_target)

    def forward(
        self,
        queries: torch.Tensor,
        positives: torch.Tensor,
        negatives: torch.Tensor | None = None,
        step: int = 0,
        **ids: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        c = self.config
        docs = positives if negatives is None else torch.cat([positives, negatives], dim=0)
        contrastive = self.contrastive(queries, positives, negatives, **ids)
        zero = queries.new_zeros(())
        sigreg = 0.5 * (self.sigreg(queries, step) + self.sigreg(docs, step)) if c.lambda_isotropy > 0 else zero
        variance = 0.5 * (self.variance(queries) + self.variance(docs)) if c.lambda_variance > 0 else zero
        total = c.lambda_contrastive * contrastive["loss"] + c.lambda_isotropy * sigreg + c.lambda_variance * variance
        with torch.no_grad():
            embedding_std = torch.cat([queries, docs], dim=0).float().std(dim=0).mean()
        return {
            "total": total,
            "contrastive": contrastive["loss"],
            "sigreg": sigreg,
            "variance": variance,
            "pos_distance": contrastive["pos_distance"],
            "embedding_std": embedding_std,
        }

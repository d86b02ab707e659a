"""Contrastive losses on Euclidean distance d(a, b) = ‖a − b‖ (embeddings are not normalised).

InfoNCELoss (in-batch negatives; van den Oord et al. 2018, "Representation Learning with Contrastive
Predictive Coding"; additive margin as in AM-softmax, Wang et al. 2018):

    docs = [p_1 … p_B, n_1 … n_B]           (all ranks' documents under DDP)
    logit_ij = −d(q_i, doc_j)² / (τ · S)     for j ≠ i
    logit_ii = −(d(q_i, p_i) + m)² / (τ · S) the positive is treated as if it were m farther away
    L = mean_i CrossEntropy(logit_i, target = i)

so the margin m is in distance units, the same units as TripletLoss's margin. Columns holding another
copy of query i's positive (the same document id), or another positive of the same query id, are
masked out of row i: they are not negatives.

The distance scale S (``distance_scale``) says what τ is measured against:

- ``none``: S = 1 (τ in squared-distance units);
- ``dim``: S = 2D, the mean squared distance between two independent N(0, I_D) points. For a Gaussian
  cloud an unrelated pair then has logit ≈ −1/τ at any width D, where S = 1 gives ≈ −2D/τ: at D = 512 and
  τ = 1 the softmax is saturated and all but the nearest negatives get no gradient;
- ``batch``: S = 2D · v̄ with v̄ the mean per-dimension variance of this batch's queries and documents
  (gradient flowing through it). Multiplying every embedding by c multiplies d² and S by c², so the loss
  does not change: the contrastive term leaves the global scale to the Gaussian regulariser, which is how
  the Gaussian recipe separates scale (SIGReg's) from shape (retrieval's and SIGReg's).

TripletLoss (the seed's form; Schroff et al. 2015, "FaceNet"):

    L = mean_i relu(d(q_i, p_i) − d(q_i, n_i) + m)

Inputs: ``queries``, ``positives`` (B, D), ``negatives`` (B, D) or None (InfoNCE only), and for masking
optional integer ``query_ids``/``positive_ids``/``negative_ids`` (B,) and ``positive_sets`` (B, K): the ids
of all of each row's query's positives, -1 padded. Both return a dict with ``loss``
and ``pos_distance`` (mean d(q, p), detached) so the trainer can log them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ragcun.losses.distributed import all_gather_ids, all_gather_with_grad

_EPS = 1e-12


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """‖a_i − b_j‖² for all pairs (A × B) in float32, clamped at 0 against round-off.

    The expansion ‖a‖² − 2a·b + ‖b‖² cancels two large terms; with bf16 products (autocast) the error at
    D 512 reaches several units, more than the gaps the ranking depends on, so autocast is off here."""
    with torch.autocast(device_type=a.device.type, enabled=False):
        a, b = a.float(), b.float()
        sq = (a * a).sum(-1, keepdim=True) - 2.0 * a @ b.T + (b * b).sum(-1).unsqueeze(0)
        return sq.clamp_min(0.0)


def pair_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """‖a_i − b_i‖ row by row, with a gradient that stays finite at 0."""
    return torch.sqrt(((a - b) ** 2).sum(-1) + _EPS)


class InfoNCELoss(nn.Module):
    def __init__(self, temperature: float = 1.0, margin: float = 0.0, gather_across_ranks: bool = True,
                 distance_scale: str = "none"):
        super().__init__()
        if distance_scale not in ("none", "dim", "batch"):
            raise ValueError(f"distance_scale must be none, dim or batch, got {distance_scale!r}")
        self.temperature = temperature
        self.margin = margin
        self.gather_across_ranks = gather_across_ranks
        self.distance_scale = distance_scale

    def logits(self, q: torch.Tensor, docs: torch.Tensor, rows: torch.Tensor | None = None,
               targets: torch.Tensor | None = None, pos_distance: torch.Tensor | None = None) -> torch.Tensor:
        """−d(q_i, doc_j)² / (τ · S), the margin applied at (rows, targets)."""
        sq = -squared_distances(q, docs)
        if self.margin and rows is not None:
            sq[rows, targets] = -((pos_distance + self.margin) ** 2)
        return sq / (self.temperature * self.scale(q, docs))

    def scale(self, queries: torch.Tensor, docs: torch.Tensor) -> torch.Tensor | float:
        """S of the module docstring."""
        if self.distance_scale == "none":
            return 1.0
        dim = queries.shape[1]
        if self.distance_scale == "dim":
            return 2.0 * dim
        cloud = torch.cat([queries, docs], dim=0)
        return 2.0 * dim * cloud.var(dim=0, unbiased=False).mean().clamp_min(_EPS)

    def forward(
        self,
        queries: torch.Tensor,
        positives: torch.Tensor,
        negatives: torch.Tensor | None = None,
        query_ids: torch.Tensor | None = None,
        positive_ids: torch.Tensor | None = None,
        negative_ids: torch.Tensor | None = None,
        positive_sets: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        q, p = queries.float(), positives.float()
        n = negatives.float() if negatives is not None else None
        batch = q.shape[0]
        if self.gather_across_ranks:
            all_p, offset = all_gather_with_grad(p)
            all_n = all_gather_with_grad(n)[0] if n is not None else None
            all_qid, all_pid = all_gather_ids(query_ids), all_gather_ids(positive_ids)
            all_nid = all_gather_ids(negative_ids)
        else:
            all_p, offset, all_n = p, 0, n
            all_qid, all_pid, all_nid = query_ids, positive_ids, negative_ids
        docs = all_p if all_n is None else torch.cat([all_p, all_n], dim=0)
        rows = torch.arange(batch, device=q.device)
        targets = rows + offset
        pos_distance = pair_distance(q, p)
        logits = self.logits(q, docs, rows, targets, pos_distance)

        num_pos = all_p.shape[0]
        mask = self._false_negative_mask(
            batch, offset, num_pos, docs.shape[0], query_ids, positive_ids, all_qid, all_pid, all_nid, q.device,
            positive_sets,
        )
        if mask is not None:
            logits = logits.masked_fill(mask, float("-inf"))
        loss = F.cross_entropy(logits, targets)
        return {"loss": loss, "pos_distance": pos_distance.detach().mean()}

    @staticmethod
    def _false_negative_mask(batch, offset, num_pos, num_docs, query_ids, positive_ids, all_qid, all_pid, all_nid,
                             device, positive_sets=None):
        """Columns are [positives; negatives]. Negatives without ids are compared with nothing. With
        ``positive_sets`` (B, K; -1 padding) every document whose id is one of row i's query's positives is
        masked in row i, wherever it comes in (another row's positive, any row's negative)."""
        if positive_ids is None and query_ids is None:
            return None
        mask = torch.zeros(batch, num_docs, dtype=torch.bool, device=device)
        if positive_sets is not None and all_pid is not None:
            doc_ids = all_pid if all_nid is None else torch.cat([all_pid, all_nid])
            doc_ids = doc_ids.to(device)
            sets = positive_sets.to(device)
            hit = (doc_ids.view(1, -1, 1) == sets.view(batch, 1, -1)).any(-1)  # (B, docs)
            mask[:, : doc_ids.shape[0]] |= hit
        if positive_ids is not None and all_pid is not None:
            pid = positive_ids.to(device).unsqueeze(1)
            mask[:, :num_pos] |= pid == all_pid.to(device).unsqueeze(0)
            if all_nid is not None and num_docs > num_pos:
                mask[:, num_pos:] |= pid == all_nid.to(device).unsqueeze(0)
        if query_ids is not None and all_qid is not None:
            mask[:, :num_pos] |= query_ids.to(device).unsqueeze(1) == all_qid.to(device).unsqueeze(0)
        rows = torch.arange(batch, device=device)
        mask[rows, rows + offset] = False  # never mask the target itself
        return mask


class TripletLoss(nn.Module):
    def __init__(self, margin: float = 1.0):
        super().__init__()
        self.margin = margin

    def forward(
        self, queries: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor | None = None, **_ids
    ) -> dict[str, torch.Tensor]:
        if negatives is None:
            raise ValueError("the triplet loss needs a negative for every query (use --loss infonce without negatives)")
        if negatives.shape[0] != queries.shape[0]:
            raise ValueError("the triplet loss takes one negative per query; for a group of negatives per query "
                             "use --loss infonce")
        q, p, n = queries.float(), positives.float(), negatives.float()
        d_pos = pair_distance(q, p)
        d_neg = pair_distance(q, n)
        loss = torch.relu(d_pos - d_neg + self.margin).mean()
        return {"loss": loss, "pos_distance": d_pos.detach().mean()}

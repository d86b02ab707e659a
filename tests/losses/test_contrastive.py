"""InfoNCE and triplet losses against values computed by hand from their definitions."""

from __future__ import annotations

import math

import pytest
import torch

from ragcun.losses.contrastive import InfoNCELoss, TripletLoss

Q = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
P = torch.tensor([[1.0, 0.0], [1.0, 2.0]])
N = torch.tensor([[0.0, 2.0], [3.0, 1.0]])


def hand_infonce(tau: float, margin: float) -> float:
    # squared distances from q_i to [p1, p2, n1, n2]
    d2 = [[1.0, 5.0, 4.0, 10.0], [1.0, 1.0, 2.0, 4.0]]
    total = 0.0
    for i in range(2):
        logits = [-v / tau for v in d2[i]]
        logits[i] = -((math.sqrt(d2[i][i]) + margin) ** 2) / tau
        total += -(logits[i] - math.log(sum(math.exp(v) for v in logits)))
    return total / 2


@pytest.mark.parametrize(("tau", "margin"), [(1.0, 0.0), (0.5, 0.0), (2.0, 0.5)])
def test_infonce_matches_hand_computation(tau, margin):
    out = InfoNCELoss(temperature=tau, margin=margin)(Q, P, N)
    assert float(out["loss"]) == pytest.approx(hand_infonce(tau, margin), rel=1e-6)
    assert float(out["pos_distance"]) == pytest.approx(1.0, rel=1e-5)


def test_infonce_without_negatives_uses_in_batch_positives_only():
    out = InfoNCELoss()(Q, P)
    # row 0: logits -1, -5; row 1: logits -1 (p1), -1 (p2)
    expected = (-(-1 - math.log(math.exp(-1) + math.exp(-5))) + math.log(2)) / 2
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-6)


def test_infonce_masks_false_negatives_by_id():
    q = torch.tensor([[0.0, 0.0], [0.1, 0.0]])
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # the same document is the positive of both queries
    loss = InfoNCELoss()
    unmasked = float(loss(q, p)["loss"])
    masked = float(loss(q, p, positive_ids=torch.tensor([7, 7]))["loss"])
    assert unmasked == pytest.approx(math.log(2), rel=1e-5)  # two equal logits
    assert masked == pytest.approx(0.0, abs=1e-6)  # the duplicate is no longer a negative
    # Another positive of the same query id is masked too.
    same_query = float(loss(q, p, query_ids=torch.tensor([3, 3]), positive_ids=torch.tensor([1, 2]))["loss"])
    assert same_query == pytest.approx(0.0, abs=1e-6)


def test_margin_raises_the_loss():
    base = float(InfoNCELoss(margin=0.0)(Q, P, N)["loss"])
    assert float(InfoNCELoss(margin=0.5)(Q, P, N)["loss"]) > base


def test_triplet_matches_hand_computation():
    # d(q,p) = [1, 1]; d(q,n) = [2, sqrt(4)=2]
    out = TripletLoss(margin=1.5)(Q, P, N)
    assert float(out["loss"]) == pytest.approx(((1 - 2 + 1.5) + (1 - 2 + 1.5)) / 2, rel=1e-5)
    assert float(TripletLoss(margin=0.5)(Q, P, N)["loss"]) == pytest.approx(0.0, abs=1e-6)


def test_triplet_needs_negatives():
    with pytest.raises(ValueError, match="negative"):
        TripletLoss()(Q, P, None)


def test_gradients_are_finite_when_query_equals_positive():
    q = torch.zeros(2, 3, requires_grad=True)
    p = torch.zeros(2, 3)
    n = torch.ones(2, 3)
    for loss in (InfoNCELoss(margin=0.3), TripletLoss(margin=1.0)):
        q.grad = None
        loss(q, p, n)["loss"].backward()
        assert torch.isfinite(q.grad).all()


def test_squared_distances_stay_float32_under_bf16_autocast():
    """At D 512, bf16 products err by units in ‖a‖² − 2a·b + ‖b‖²; the loss computes it in float32."""
    from ragcun.losses.contrastive import squared_distances

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(16, 512, generator=g), torch.randn(24, 512, generator=g)
    exact = torch.cdist(a.double(), b.double()) ** 2
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        under_autocast = squared_distances(a, b)
        loss = InfoNCELoss()(a[:8], b[:8], b[8:16])["loss"]
    assert under_autocast.dtype == torch.float32
    assert (under_autocast.double() - exact).abs().max() < 1e-2
    assert float(loss) == pytest.approx(float(InfoNCELoss()(a[:8], b[:8], b[8:16])["loss"]), rel=1e-5)


def test_positive_ids_without_negative_ids_mask_only_positive_columns():
    """Negatives given without ids: the positives' columns are still masked by id, the negatives' by nothing."""
    q = torch.tensor([[0.0, 0.0], [0.1, 0.0]])
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    n = torch.tensor([[2.0, 0.0], [1.5, 0.0]])
    loss = InfoNCELoss()(q, p, n, positive_ids=torch.tensor([7, 7]))["loss"]
    # row i: its positive, the other copy of it masked, the two negatives (d² from q_0: 1, 4, 2.25).
    expected = [math.log(1 + math.exp(1 - 4) + math.exp(1 - 2.25)),
                math.log(1 + math.exp(0.81 - 3.61) + math.exp(0.81 - 1.96))]
    assert float(loss) == pytest.approx(sum(expected) / 2, rel=1e-4)


def test_all_positives_of_a_query_are_masked_wherever_they_come_in():
    """Query 0 has two relevant documents, A (its row's positive) and B; B comes in as row 1's positive and
    as row 1's negative copy. With the positive sets, B is no negative of query 0."""
    A, B, C = 11, 22, 33
    q = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # row 1's positive is B
    n = torch.tensor([[2.0, 2.0], [0.0, 1.0]])  # row 0's negative C, row 1's negative another copy of B
    ids = {"query_ids": torch.tensor([1, 2]), "positive_ids": torch.tensor([A, B]), "negative_ids": torch.tensor([C, B])}
    sets = torch.tensor([[A, B, -1], [B, -1, -1]])
    loss = InfoNCELoss()
    with_sets = float(loss(q, p, n, positive_sets=sets, **ids)["loss"])
    # row 0: target d²(q0, A) = 1, negatives: C (d² 8) only — B is masked in both places
    row0 = math.log(1 + math.exp(1 - 8))
    # row 1: target d²(q1, B) = 10; negatives A (d² 4) and C (d² 5); its own negative is B again: masked as its positive
    row1 = -(-10 - math.log(math.exp(-10) + math.exp(-4) + math.exp(-5)))
    assert with_sets == pytest.approx((row0 + row1) / 2, rel=1e-5)
    without = float(loss(q, p, n, **ids)["loss"])  # B counts as a negative of query 0 twice
    row0_without = math.log(1 + 2 * math.exp(1 - 1) + math.exp(1 - 8))
    assert without == pytest.approx((row0_without + row1) / 2, rel=1e-5)

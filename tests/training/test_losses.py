"""Losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from training.losses import AsymmetricAngularMarginLoss, AsymmetricLoss, BinaryCrossEntropy, create_loss


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_asl_matches_hand_computation() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    gamma_neg, gamma_pos, clip = 4.0, 1.0, 0.05
    total = 0.0
    for z, y in ((2.0, 1), (-1.0, 0), (0.5, 0), (3.0, 1)):
        p = _sigmoid(z)
        if y:
            total += (1 - p) ** gamma_pos * math.log(p)
        else:
            p_neg = min(1 - p + clip, 1.0)  # shifted "absent" probability
            total += (1 - p_neg) ** gamma_neg * math.log(p_neg)
    loss = AsymmetricLoss(gamma_neg, gamma_pos, clip, eps=1e-8, reduction="sum", scale=1.0)(logits, targets)
    assert loss.item() == pytest.approx(-total, rel=1e-5)


def test_asl_query2label_defaults_and_reduction() -> None:
    logits = torch.tensor([[1.0, -2.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0]])
    loss = AsymmetricLoss()(logits, targets)  # gamma_neg 2, gamma_pos 0, clip 0, mean * 1000
    expected = -(math.log(_sigmoid(1.0)) + _sigmoid(-2.0) ** 2 * math.log(1 - _sigmoid(-2.0))
                 + math.log(0.5)) / 3 * 1000
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_asl_without_focusing_is_bce() -> None:
    logits = torch.randn(4, 6)
    targets = (torch.rand(4, 6) > 0.5).float()
    asl = AsymmetricLoss(gamma_neg=0, gamma_pos=0, clip=0, eps=1e-12, scale=1.0)(logits, targets)
    torch.testing.assert_close(asl, BinaryCrossEntropy()(logits, targets), rtol=1e-5, atol=1e-6)


def test_asl_focal_weights_are_detached_by_default() -> None:
    logits = torch.tensor([[0.3]], requires_grad=True)
    targets = torch.tensor([[0.0]])
    AsymmetricLoss(gamma_neg=2, scale=1.0)(logits, targets).backward()
    p = _sigmoid(0.3)
    # d/dz [-(p^2 * log(1-p))] with p^2 held constant = p^2 * p
    assert logits.grad.item() == pytest.approx(p**2 * p, rel=1e-5)


def test_bce_hand_value() -> None:
    loss = BinaryCrossEntropy()(torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0, 0.0]]))
    expected = -(math.log(0.5) + math.log(1 - _sigmoid(2.0))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_create_loss_by_name() -> None:
    assert isinstance(create_loss("asl", gamma_neg=4), AsymmetricLoss)
    with pytest.raises(ValueError, match="unknown loss"):
        create_loss("hinge")
    with pytest.raises(ValueError, match="clip"):
        AsymmetricLoss(clip=1.5)


def test_aam_matches_hand_computation() -> None:
    s, m, k = 10.0, 0.2, 0.7
    cos = torch.tensor([[0.6, -0.3], [0.1, 0.4]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    total = 0.0
    for c, y in ((0.6, 1), (-0.3, 0), (0.1, 0), (0.4, 1)):
        if y:
            total += k / s * math.log(_sigmoid(s * (c - m)))
        else:
            total += (1 - k) / s * math.log(_sigmoid(-s * (c + m)))
    loss = AsymmetricAngularMarginLoss(scale=s, margin=m, k=k, reduction="batchmean")(cos * s, targets)
    assert loss.item() == pytest.approx(-total / 2, rel=1e-5)
    summed = AsymmetricAngularMarginLoss(scale=s, margin=m, k=k)(cos * s, targets)  # the reference's sum
    assert summed.item() == pytest.approx(-total, rel=1e-5)

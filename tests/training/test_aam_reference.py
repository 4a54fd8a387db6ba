"""`AsymmetricAngularMarginLoss` against an independent from-formula version of deep-object-reid's `AMBinaryLoss`.

The reference (torchreid/losses/asl.py on the `multilabel` branch, c92f63d8), written out here in float64 NumPy from
its formula, not its code:
    p+ = sigmoid(s (cos - m)),  p- = sigmoid(-s (cos + m))
    if gamma+ > 0 or gamma- > 0:  p- <- min(p- + clip, 1);  w = p-^gamma+ (positives), p+^gamma- (negatives)
    else:                         w = 1
    L = -sum over (image, label) with target >= 0 of  w [ (k/s) y log p+ + ((1-k)/s) (1-y) log p- ]
i.e. a plain sum over the batch (no division by B), the shift inside the negatives' logarithm, weights that carry
gradient, and entries with a negative target ignored.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from training.losses import AsymmetricAngularMarginLoss


def _reference(cos: np.ndarray, targets: np.ndarray, s: float, m: float, k: float, gamma_pos: float,
               gamma_neg: float, clip: float) -> float:
    total = 0.0
    for c, y in zip(cos.ravel(), targets.ravel(), strict=True):
        if y < 0:
            continue
        p_pos = 1.0 / (1.0 + np.exp(-s * (c - m)))
        p_neg = 1.0 / (1.0 + np.exp(s * (c + m)))
        weight = 1.0
        if gamma_pos > 0 or gamma_neg > 0:
            if clip > 0:
                p_neg = min(p_neg + clip, 1.0)
            weight = p_neg**gamma_pos if y == 1 else p_pos**gamma_neg
        term = k / s * np.log(p_pos) if y == 1 else (1 - k) / s * np.log(p_neg)
        total -= weight * term
    return total


def _batch(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    cos = rng.uniform(-0.95, 0.95, size=(6, 9))
    targets = (rng.random((6, 9)) < 0.3).astype(np.float64)
    targets[0, :3] = -1.0  # unknown labels, which the reference ignores
    return cos, targets


SETTINGS = list(itertools.product(
    [17.0, 23.0, 30.0],  # s: GCN config, ML-Decoder config, class default
    [0.0, 0.35],  # m: configs, class default
    [0.7, 0.8],  # k
    [(0.0, 0.0), (0.0, 1.0), (1.0, 4.0)],  # (gamma_pos, gamma_neg): configs, OTX-like, ASL-like
    [0.0, 0.05],  # clip
))


@pytest.mark.parametrize(("s", "m", "k", "gammas", "clip"), SETTINGS)
def test_value_matches_the_reference_formula(s: float, m: float, k: float, gammas: tuple[float, float],
                                             clip: float) -> None:
    cos, targets = _batch()
    loss = AsymmetricAngularMarginLoss(scale=s, margin=m, k=k, gamma_pos=gammas[0], gamma_neg=gammas[1], clip=clip)
    ours = loss(torch.tensor(cos * s, dtype=torch.float32), torch.tensor(targets, dtype=torch.float32)).item()
    expected = _reference(cos, targets, s, m, k, gammas[0], gammas[1], clip)
    assert ours == pytest.approx(expected, rel=2e-5, abs=1e-6)


@pytest.mark.parametrize(("gammas", "clip"), [((0.0, 0.0), 0.05), ((1.0, 4.0), 0.05), ((0.0, 2.0), 0.0)])
def test_gradient_matches_the_reference_formula(gammas: tuple[float, float], clip: float) -> None:
    """Autograd through our loss equals central differences of the reference (the weights carry gradient too)."""
    s, m, k = 23.0, 0.1, 0.7
    cos, targets = _batch(seed=1)
    loss = AsymmetricAngularMarginLoss(scale=s, margin=m, k=k, gamma_pos=gammas[0], gamma_neg=gammas[1], clip=clip)
    logits = torch.tensor(cos * s, dtype=torch.float64, requires_grad=True)
    loss(logits, torch.tensor(targets)).backward()
    assert logits.grad is not None
    step = 1e-6
    for index in [(0, 1), (1, 0), (2, 4), (3, 7), (5, 8)]:
        up, down = cos.copy(), cos.copy()
        up[index] += step
        down[index] -= step
        numeric = (_reference(up, targets, s, m, k, *gammas, clip) - _reference(down, targets, s, m, k, *gammas,
                                                                                  clip)) / (2 * step)
        assert logits.grad[index].item() * s == pytest.approx(numeric, rel=1e-4, abs=1e-9), index


def test_the_reduction_is_a_sum_over_the_batch() -> None:
    cos, targets = _batch()
    loss = AsymmetricAngularMarginLoss(scale=23.0, margin=0.0, k=0.7)
    logits, labels = torch.tensor(cos * 23.0), torch.tensor(targets)
    one = loss(logits, labels).item()
    twice = loss(torch.cat([logits, logits]), torch.cat([labels, labels])).item()
    assert twice == pytest.approx(2 * one, rel=1e-9)  # doubling the batch doubles the loss: no division by B
    batchmean = AsymmetricAngularMarginLoss(scale=23.0, margin=0.0, k=0.7, reduction="batchmean")
    assert batchmean(logits, labels).item() == pytest.approx(one / cos.shape[0], rel=1e-9)


def test_the_shift_enters_the_negatives_logarithm() -> None:
    """A negative with cos = 0.9 at s 30: unshifted log p- is about -27; the reference's log(p- + 0.05) about -3."""
    loss = AsymmetricAngularMarginLoss(scale=30.0, margin=0.0, k=0.8, gamma_neg=1.0, clip=0.05)
    value = loss(torch.tensor([[0.9 * 30.0]]), torch.tensor([[0.0]])).item()
    p_pos = 1 / (1 + np.exp(-27.0))
    assert value == pytest.approx(-p_pos * 0.2 / 30.0 * np.log(1 / (1 + np.exp(27.0)) + 0.05), rel=1e-5)


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="reduction"):
        AsymmetricAngularMarginLoss(scale=23.0, reduction="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gammas"):
        AsymmetricAngularMarginLoss(scale=23.0, gamma_neg=-1.0)

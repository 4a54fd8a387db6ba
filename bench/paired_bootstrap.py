"""Paired differences between two methods, with a bootstrap interval over validation images and training seeds.

A paper's claim ("Query2Label beats a linear head") holds on a benchmark when the difference it predicts stays
positive beyond what the choice of validation images and of training seeds moves. Both methods ran with the same
seeds on the same validation images, so the difference is paired: one bootstrap replicate draws the seeds with
replacement and the images with replacement (the same images for both methods and for every seed drawn) and takes
the mean over the drawn seeds of metric(A) - metric(B) on the drawn images. The 2.5th and 97.5th percentiles of the
replicates are the 95 % interval. With few seeds the seed level is coarse (3 seeds give 10 distinct multisets), but
a difference that one seed reverses is not called a reproduction.

Verdicts read the interval only: "reproduces" when it lies above 0, "reversed" when below, "level" when it holds 0.
The metrics here are vectorised over labels (so a replicate costs one sort per method and seed) and equal
`training.metrics` on the same inputs, ties included (tests/bench/test_paired_bootstrap.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

__all__ = ["PairedDifference", "average_precision_columns", "mean_accuracy", "mean_average_precision",
           "paired_bootstrap", "pointing_game", "verdict"]

T = TypeVar("T")
Metric = Callable[[T, np.ndarray], np.ndarray]  # (one seed's predictions, image indices) -> [K] statistics
_EPS = 1e-20  # as training.metrics.attribute_metrics


def average_precision_columns(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Non-interpolated AP of every column of `[N, C]` scores, tied scores taken as one threshold (as
    `training.metrics.average_precision`); NaN for a column without positives."""
    scores = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(targets) > 0.5
    n = scores.shape[0]
    order = np.argsort(-scores, axis=0, kind="stable")
    ranked = np.take_along_axis(scores, order, axis=0)
    hits = np.take_along_axis(truth, order, axis=0)
    true_pos = np.cumsum(hits, axis=0)
    last = np.ones_like(hits)
    last[:-1] = ranked[:-1] != ranked[1:]  # the last row of each run of equal scores
    # every row is scored at the end of its run of ties: the reverse running minimum of the runs' last rows
    ends = np.where(last, np.arange(n)[:, None], n - 1)
    ends = np.minimum.accumulate(ends[::-1], axis=0)[::-1]
    precision = np.take_along_axis(true_pos, ends, axis=0) / (ends + 1)
    positives = hits.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(positives > 0, (hits * precision).sum(axis=0) / positives, np.nan)


def mean_average_precision(probs: np.ndarray, targets: np.ndarray, labels: np.ndarray | None = None) -> float:
    """mAP over the labels (all, or the index array `labels`) that have positives; NaN if none has."""
    per_label = average_precision_columns(probs if labels is None else probs[:, labels],
                                          targets if labels is None else targets[:, labels])
    defined = per_label[~np.isnan(per_label)]
    return float(defined.mean()) if defined.size else float("nan")


def mean_accuracy(probs: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> float:
    """mA: mean over labels of (TPR + TNR) / 2 at `threshold` (the pedestrian-attribute protocol)."""
    predicted, truth = np.asarray(probs) >= threshold, np.asarray(targets) > 0.5
    tpr = (predicted & truth).sum(axis=0) / (truth.sum(axis=0) + _EPS)
    tnr = (~predicted & ~truth).sum(axis=0) / ((~truth).sum(axis=0) + _EPS)
    return float(np.mean((tpr + tnr) / 2))


def pointing_game(hits: np.ndarray, pairs: np.ndarray) -> float:
    """Hits over (present label, box) pairs, from per-image counts."""
    total = int(np.sum(pairs))
    return int(np.sum(hits)) / total if total else float("nan")


def verdict(low: float, high: float) -> str:
    """What a 95 % interval of A - B says about the claim "A beats B"."""
    if low > 0:
        return "reproduces"
    if high < 0:
        return "reversed"
    return "level"


@dataclass(frozen=True)
class PairedDifference:
    """A - B: the mean over seeds on every image, its bootstrap interval, and each seed's own difference."""

    mean: float
    low: float
    high: float
    per_seed: tuple[float, ...]
    replicates: int

    @property
    def verdict(self) -> str:
        return verdict(self.low, self.high)


def paired_bootstrap(metric: Metric, a: Sequence[T], b: Sequence[T], num_images: int, replicates: int = 2000,
                     confidence: float = 0.95, seed: int = 0) -> list[PairedDifference]:
    """Bootstrap A - B over images and seeds (module docstring), for each of the statistics `metric` returns.

    Args:
        metric: (one seed's predictions, image indices) -> `[K]` statistics (e.g. mAP and tail mAP).
        a: per seed, method A's predictions; `b` the same seeds of method B, in the same order.
        num_images: validation images (indices drawn from `range(num_images)`).
        replicates: bootstrap replicates.
        confidence: interval coverage.
        seed: of the resampling, so the interval is reproducible.

    Returns:
        One `PairedDifference` per statistic.
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"paired seeds needed: {len(a)} against {len(b)}")
    every = np.arange(num_images)
    per_seed = np.array([np.atleast_1d(metric(x, every)) - np.atleast_1d(metric(y, every))
                         for x, y in zip(a, b, strict=True)])  # [S, K]
    rng = np.random.default_rng(seed)
    draws = np.empty((replicates, per_seed.shape[1]))
    for r in range(replicates):
        seeds = rng.integers(len(a), size=len(a))
        images = rng.integers(num_images, size=num_images)
        differences = {int(s): np.atleast_1d(metric(a[s], images)) - np.atleast_1d(metric(b[s], images))
                       for s in np.unique(seeds)}
        draws[r] = np.nanmean([differences[int(s)] for s in seeds], axis=0)
    tail = (1 - confidence) / 2 * 100
    low, high = np.nanpercentile(draws, [tail, 100 - tail], axis=0)
    return [PairedDifference(float(np.mean(per_seed[:, k])), float(low[k]), float(high[k]),
                             tuple(float(x) for x in per_seed[:, k]), replicates) for k in range(per_seed.shape[1])]

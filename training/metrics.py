"""Multi-label metrics on scores `[N, C]` and multi-hot targets `[N, C]` (NumPy, so export and bench can use them).

mAP is the mean over classes of non-interpolated average precision, AP = sum_n (R_n - R_{n-1}) P_n over the distinct
score thresholds, which equals the ASL/ML-Decoder definition (mean precision at the rank of each positive) when
scores are untied and, like scikit-learn's `average_precision_score`, treats tied scores as one threshold instead of
depending on sort order. A class without positives has no defined AP: it is NaN in the per-class array and left out
of the mean (ASL counts it as 0, Query2Label lets NaN spread into the mean); `num_classes_without_positives` says
how many were left out.

CP/CR/CF1/OP/OR/OF1 follow the ML-GCN protocol quoted in Query2Label's table: a label is predicted when its
probability reaches the threshold; CF1 is the harmonic mean of the averaged precision and recall.
"""

from __future__ import annotations

import numpy as np

__all__ = ["average_precision", "mean_average_precision", "threshold_metrics"]


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Non-interpolated AP of one class; NaN if it has no positives."""
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets) > 0.5
    positives = int(targets.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_targets = scores[order], targets[order]
    true_pos = np.cumsum(sorted_targets)
    # last index of every run of equal scores: one operating point per distinct threshold
    boundaries = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    tp = true_pos[boundaries]
    precision = tp / (boundaries + 1)
    recall = tp / positives
    recall_steps = np.diff(np.r_[0.0, recall])
    return float(np.sum(recall_steps * precision))


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> dict[str, float | np.ndarray]:
    """mAP over classes that have positives.

    Returns:
        `map` (mean, 0..1), `per_class` (`[C]`, NaN where undefined), `num_classes_without_positives`.
    """
    scores, targets = np.asarray(scores), np.asarray(targets)
    if scores.shape != targets.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} must both be [N, C]")
    per_class = np.array([average_precision(scores[:, c], targets[:, c]) for c in range(scores.shape[1])])
    defined = ~np.isnan(per_class)
    mean = float(per_class[defined].mean()) if defined.any() else float("nan")
    return {"map": mean, "per_class": per_class, "num_classes_without_positives": int((~defined).sum())}


def threshold_metrics(
    probs: np.ndarray, targets: np.ndarray, threshold: float | np.ndarray = 0.5, top_k: int | None = None
) -> dict[str, float]:
    """CP, CR, CF1, OP, OR, OF1 at a threshold (scalar or per class), optionally only among each image's top-k.

    Args:
        probs: sigmoid probabilities `[N, C]`.
        targets: multi-hot `[N, C]`.
        threshold: a label is predicted when its probability is >= threshold.
        top_k: if set, only each image's k highest-scoring labels may be predicted (the "top-3" protocol).
    """
    probs, truth = np.asarray(probs, dtype=np.float64), np.asarray(targets) > 0.5
    predicted = probs >= np.asarray(threshold)
    if top_k is not None:
        keep = np.zeros_like(predicted)
        top = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
        np.put_along_axis(keep, top, True, axis=1)
        predicted &= keep
    correct = (predicted & truth).sum(axis=0).astype(np.float64)  # Nc per class
    n_pred = predicted.sum(axis=0).astype(np.float64)  # Np
    n_true = truth.sum(axis=0).astype(np.float64)  # Ng
    cp = float(np.mean(correct / np.maximum(n_pred, 1)))
    cr = float(np.mean(correct / np.maximum(n_true, 1)))
    op = float(correct.sum() / max(n_pred.sum(), 1))
    o_r = float(correct.sum() / max(n_true.sum(), 1))
    return {
        "CP": cp, "CR": cr, "CF1": _harmonic(cp, cr), "OP": op, "OR": o_r, "OF1": _harmonic(op, o_r),
    }


def _harmonic(a: float, b: float) -> float:
    return 2 * a * b / (a + b) if a + b > 0 else 0.0

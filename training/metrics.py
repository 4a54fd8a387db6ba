"""Multi-label metrics on scores `[N, C]` and multi-hot targets `[N, C]` (NumPy, so export and bench can use them).

mAP is the mean over classes of non-interpolated average precision, AP = sum_n (R_n - R_{n-1}) P_n over the distinct
score thresholds, which equals the ASL/ML-Decoder definition (mean precision at the rank of each positive) when
scores are untied and, like scikit-learn's `average_precision_score`, treats tied scores as one threshold instead of
depending on sort order. A class without positives has no defined AP: it is NaN in the per-class array and left out
of the mean (ASL counts it as 0, Query2Label lets NaN spread into the mean); `num_classes_without_positives` says
how many were left out.

CP/CR/CF1/OP/OR/OF1 follow the ML-GCN protocol quoted in Query2Label's table: a label is predicted when its
probability reaches the threshold; CF1 is the harmonic mean of the averaged precision and recall. The top-3 variant
keeps only each image's three highest-scoring labels.

Attribute metrics follow Label2Label's `get_pedestrian_metrics`: mA is the mean over attributes of
(TPR + TNR) / 2, and instance Acc/Prec/Rec/F1 are computed per image, then averaged.

The pointing game scores attention maps against boxes: the fraction of (image, present label) pairs whose map's
highest cell falls inside a box of that label.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "attribute_metrics", "average_precision", "calibrate_thresholds", "mean_average_precision", "pointing_game",
    "threshold_metrics",
]

_EPS = 1e-20  # Label2Label's guard against empty denominators


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


def attribute_metrics(probs: np.ndarray, targets: np.ndarray, threshold: float | np.ndarray = 0.5) -> dict[str, float]:
    """mA and instance-based Acc/Prec/Rec/F1 (pedestrian-attribute protocol)."""
    predicted = np.asarray(probs) >= np.asarray(threshold)
    truth = np.asarray(targets) > 0.5
    positives, negatives = truth.sum(axis=0), (~truth).sum(axis=0)
    tpr = (predicted & truth).sum(axis=0) / (positives + _EPS)
    tnr = (~predicted & ~truth).sum(axis=0) / (negatives + _EPS)
    intersection = (predicted & truth).sum(axis=1)
    union = (predicted | truth).sum(axis=1)
    inst_prec = intersection / (predicted.sum(axis=1) + _EPS)
    inst_rec = intersection / (truth.sum(axis=1) + _EPS)
    inst_f1 = 2 * inst_prec * inst_rec / (inst_prec + inst_rec + _EPS)
    return {
        "mA": float(np.mean((tpr + tnr) / 2)),
        "instance_acc": float(np.mean(intersection / (union + _EPS))),
        "instance_prec": float(np.mean(inst_prec)),
        "instance_rec": float(np.mean(inst_rec)),
        "instance_f1": float(np.mean(inst_f1)),
    }


def calibrate_thresholds(
    probs: np.ndarray, targets: np.ndarray, default: float = 0.5, min_positives: int = 1
) -> np.ndarray:
    """Per-label decision thresholds that maximise each label's F1 on validation data.

    The candidate thresholds are the label's own scores (F1 only changes there); a threshold is placed halfway
    between the chosen score and the next lower one, so a slightly lower score on new data still counts. Labels with
    fewer than `min_positives` positives keep `default`.
    """
    probs, truth = np.asarray(probs, dtype=np.float64), np.asarray(targets) > 0.5
    thresholds = np.full(probs.shape[1], default)
    for label in range(probs.shape[1]):
        positives = int(truth[:, label].sum())
        if positives < min_positives:
            continue
        order = np.argsort(-probs[:, label], kind="stable")
        scores, hits = probs[order, label], truth[order, label]
        true_pos = np.cumsum(hits)
        predicted = np.arange(1, len(scores) + 1)
        f1 = 2 * true_pos / (predicted + positives)
        last_of_run = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # predict all tied scores together
        best = last_of_run[np.argmax(f1[last_of_run])]
        below = scores[best + 1] if best + 1 < len(scores) else 0.0
        thresholds[label] = (scores[best] + below) / 2
    return thresholds


def pointing_game(
    attention: np.ndarray,
    targets: np.ndarray,
    boxes: list[dict[int, list[tuple[float, float, float, float]]]],
    sizes: list[tuple[int, int]],
) -> float:
    """Fraction of (image, present label with a box) pairs whose attention peak lies inside a box of that label.

    Args:
        attention: `[N, C, h, w]` maps over the squashed network input.
        targets: `[N, C]` multi-hot.
        boxes: per image, label index -> boxes `(x, y, w, h)` in original pixels.
        sizes: per image, original `(width, height)`; a squash resize maps cell (i, j) to its centre.
    """
    hits = total = 0
    _, _, height, width = attention.shape
    for index, (per_label, (image_w, image_h)) in enumerate(zip(boxes, sizes, strict=True)):
        for label in np.flatnonzero(np.asarray(targets[index]) > 0.5):
            label_boxes = per_label.get(int(label))
            if not label_boxes:
                continue
            row, col = np.unravel_index(int(np.argmax(attention[index, label])), (height, width))
            x = (col + 0.5) / width * image_w
            y = (row + 0.5) / height * image_h
            total += 1
            hits += any(bx <= x <= bx + bw and by <= y <= by + bh for bx, by, bw, bh in label_boxes)
    return hits / total if total else float("nan")

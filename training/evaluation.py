"""Turn validation scores into the metrics a run reports, by task."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from training.data.samples import MultiLabelSet
from training.metrics import attribute_metrics, mean_average_precision, pointing_game, threshold_metrics

__all__ = ["EvalScores", "summarize"]


@dataclass(frozen=True)
class EvalScores:
    """Everything one evaluation pass produced (rows in the validation set's order)."""

    probs: np.ndarray  # [N, C]
    targets: np.ndarray  # [N, C]
    loss: float
    attention: np.ndarray | None = None  # [N, C, h, w], kept only when the data has boxes
    aux_probs: np.ndarray | None = None  # [N, C] of the first auxiliary head (Label2Label's AQN)


def _map(probs: np.ndarray, targets: np.ndarray) -> float:
    value = float(mean_average_precision(probs, targets)["map"])
    return 0.0 if math.isnan(value) else value


def summarize(scores: EvalScores, task: str, data: MultiLabelSet | None = None) -> dict[str, float]:
    """mAP, CP/CR/CF1/OP/OR/OF1 at 0.5 and top-3, attribute metrics (mA, instance) for the attributes task, the
    pointing game where boxes exist, and the auxiliary head's mAP/mA for comparison."""
    metrics: dict[str, float] = {"val_loss": scores.loss, "mAP": _map(scores.probs, scores.targets)}
    metrics.update(threshold_metrics(scores.probs, scores.targets, 0.5))
    top3 = threshold_metrics(scores.probs, scores.targets, 0.5, top_k=3)
    metrics.update({f"{k}_top3": v for k, v in top3.items()})
    if task == "attributes":
        metrics.update(attribute_metrics(scores.probs, scores.targets))
    if scores.aux_probs is not None:
        metrics["aux_mAP"] = _map(scores.aux_probs, scores.targets)
        metrics["aux_mA"] = attribute_metrics(scores.aux_probs, scores.targets)["mA"]
    if scores.attention is not None and data is not None:
        sizes = [s.size or (1, 1) for s in data.samples]
        value = pointing_game(scores.attention, scores.targets, [s.boxes for s in data.samples], sizes)
        if not math.isnan(value):
            metrics["pointing_game"] = value
    return metrics

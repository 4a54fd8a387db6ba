"""What the feedback says of one served version, per label, over a sliding window: how often its answers were right.

Each feedback compares the answer's decision (its probability at the version's threshold) with what the user says
is true, for every label the feedback newly makes known: a true or false positive, a false or true negative. Over
the window that gives each label's precision and recall as its users see them, which the dashboard shows and which
say where recalibration (`labelserve calibrate`) would help. A label's answer changed by a later feedback keeps its
first outcome here; the store keeps the latest, which is what calibration reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from labelserve.label_stats import positives
from service.sliding_window import SlidingSums

__all__ = ["FeedbackReport", "FeedbackWindow"]

_OUTCOMES = ("tp", "fp", "fn", "tn")


@dataclass(frozen=True)
class FeedbackReport:
    """Per label over the window: outcomes, precision and recall (None without the answers to say), worst first."""

    model: str
    version: int
    answers: int
    labels: list[dict[str, object]]

    def as_dict(self) -> dict[str, object]:
        """JSON-ready, for the statistics endpoint and the page."""
        return {"answers": self.answers, "labels": self.labels}


class FeedbackWindow:
    """Counts, per label, the outcomes that feedback reveals for one version's answers."""

    def __init__(self, model: str, version: int, labels: Sequence[str], thresholds: Sequence[float],
                 window_images: int, window_s: float) -> None:
        self.model = model
        self.version = version
        self.labels = tuple(labels)
        self._thresholds = np.asarray(thresholds, dtype=np.float64)
        self._window = SlidingSums({name: (len(labels),) for name in _OUTCOMES}, window_images, window_s)

    def observe(self, probabilities: np.ndarray, before: np.ndarray, after: np.ndarray) -> None:
        """One feedback: the answer's `[C]` probabilities, what was known before (-1: unknown) and after."""
        new = (before < 0) & (after >= 0)
        if not new.any():
            return
        said = positives(probabilities[None, :], self._thresholds)[0]
        true = after == 1
        self._window.add(1, tp=new & said & true, fp=new & said & ~true, fn=new & ~said & true,
                         tn=new & ~said & ~true)

    def report(self) -> FeedbackReport:
        """Per label: outcomes, precision and recall; labels with the most wrong answers first."""
        totals = self._window.totals()
        counts = {name: totals.sums[name] for name in _OUTCOMES}
        labels = []
        for i, name in enumerate(self.labels):
            tp, fp, fn, tn = (int(counts[outcome][i]) for outcome in _OUTCOMES)
            labels.append({"name": name, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
                           "precision": tp / (tp + fp) if tp + fp else None,
                           "recall": tp / (tp + fn) if tp + fn else None})
        labels.sort(key=lambda entry: -(int(entry["fp"]) + int(entry["fn"])))  # type: ignore[call-overload]
        return FeedbackReport(self.model, self.version, totals.items, labels)

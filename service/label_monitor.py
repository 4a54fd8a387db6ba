"""Per-label health of one served model version: its answers over a sliding window, against its bundle's baseline.

A multi-label model fails one label at a time (a new camera, a season, a product line), while every request-level
metric stays green. So each served version counts, per label, how its answers fall into the baseline's probability
bins (`labelserve.label_stats`) and how often the label is given, over the last `window_images` answers and
`window_s` seconds, and scores each label's drift from the baseline (PSI). A label is flagged once the window holds
`min_images` answers and its drift passes `drift_threshold`.

The window is ten slices (`service.sliding_window`): memory is O(slices x labels x bins) whatever the traffic (a
1,000-label model: 10 x 1,000 x 16 counts, 1.3 MB), the window slides in steps of a tenth, and adding a batch is one
`bincount` over its logits. Answers are counted on the engine
thread right after each batch (all protocols, shadow traffic on the candidate's own window); reports are read on
the event loop, under a lock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from labelserve.label_stats import NUM_BINS, Baseline, bin_counts, population_stability, positives
from service.sliding_window import SlidingSums

__all__ = ["HealthReport", "LabelHealth", "LabelMonitor", "MonitorSettings"]

Status = Literal["ok", "drift", "warming up", "no baseline"]


@dataclass(frozen=True)
class MonitorSettings:
    """The window and the flag (service.settings `LABELSERVE_MONITOR_*`)."""

    window_images: int = 2000
    window_s: float = 3600.0
    drift_threshold: float = 0.25
    min_images: int = 200


@dataclass(frozen=True)
class LabelHealth:
    """One label: how often it is given now and on the validation split, and how far its answers drifted."""

    label: str
    served_rate: float | None  # None: no answer in the window yet
    baseline_rate: float | None  # None: the bundle has no baseline
    drift: float | None  # PSI; None below min_images or without a baseline
    flagged: bool


@dataclass(frozen=True)
class HealthReport:
    """A model version's labels, most drifted first, and what the window holds."""

    model: str
    version: int
    status: Status
    window_images: int
    window_span_s: float
    baseline_images: int | None
    served_labels_per_image: float | None
    baseline_labels_per_image: float | None
    drift_threshold: float
    min_images: int
    labels: list[LabelHealth] = field(default_factory=list)

    @property
    def flagged(self) -> list[str]:
        """Labels whose drift passed the threshold, most drifted first."""
        return [health.label for health in self.labels if health.flagged]

    def as_dict(self) -> dict[str, object]:
        """JSON-ready, for the statistics endpoint and the page."""
        return {"status": self.status, "window_images": self.window_images,
                "window_span_s": round(self.window_span_s, 3), "baseline_images": self.baseline_images,
                "served_labels_per_image": self.served_labels_per_image,
                "baseline_labels_per_image": self.baseline_labels_per_image,
                "drift_metric": "psi", "drift_threshold": self.drift_threshold, "min_images": self.min_images,
                "flagged": self.flagged,
                "labels": [{"name": h.label, "served_rate": h.served_rate, "baseline_rate": h.baseline_rate,
                            "drift": h.drift, "flagged": h.flagged} for h in self.labels]}


class LabelMonitor:
    """Counts one version's answers per label in a sliding window and reports their health against its baseline."""

    def __init__(self, model: str, version: int, labels: Sequence[str], thresholds: Sequence[float],
                 baseline: Baseline | None, settings: MonitorSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if baseline is not None and len(baseline.positive_rate) != len(labels):
            raise ValueError(f"the baseline has {len(baseline.positive_rate)} labels, the model {len(labels)}")
        self.model = model
        self.version = version
        self.labels = tuple(labels)
        self.baseline = baseline
        self.settings = settings
        self._thresholds = np.asarray(thresholds, dtype=np.float64)
        self._baseline_histogram = baseline.histogram_array() if baseline is not None else None
        self._window = SlidingSums({"histogram": (len(labels), NUM_BINS), "positives": (len(labels),)},
                                   settings.window_images, settings.window_s, clock=clock)

    def observe(self, logits: np.ndarray) -> None:
        """Count a batch of answers, `logits [B, C]` as the engine gave them."""
        self._window.add(len(logits), histogram=bin_counts(logits),
                         positives=positives(logits, self._thresholds).sum(axis=0))

    def report(self) -> HealthReport:
        """Every label's health now, most drifted first (labels without a drift score last, in model order)."""
        totals = self._window.totals()
        images, histogram, hits, span = (totals.items, totals.sums["histogram"], totals.sums["positives"],
                                         totals.span_s)
        settings = self.settings
        served = hits / images if images else None
        drift = None
        if self._baseline_histogram is not None and images >= settings.min_images:
            drift = population_stability(self._baseline_histogram, histogram)
        baseline_rates = self.baseline.positive_rate if self.baseline is not None else None
        labels = [LabelHealth(label=name, served_rate=float(served[i]) if served is not None else None,
                              baseline_rate=baseline_rates[i] if baseline_rates is not None else None,
                              drift=float(drift[i]) if drift is not None else None,
                              flagged=bool(drift is not None and drift[i] >= settings.drift_threshold))
                  for i, name in enumerate(self.labels)]
        labels.sort(key=lambda h: -h.drift if h.drift is not None else math.inf)
        flagged = any(h.flagged for h in labels)
        status: Status = ("no baseline" if self.baseline is None else "warming up" if drift is None
                          else "drift" if flagged else "ok")
        return HealthReport(
            model=self.model, version=self.version, status=status, window_images=images, window_span_s=span,
            baseline_images=self.baseline.images if self.baseline is not None else None,
            served_labels_per_image=float(hits.sum() / images) if images else None,
            baseline_labels_per_image=self.baseline.mean_labels_per_image if self.baseline is not None else None,
            drift_threshold=settings.drift_threshold, min_images=settings.min_images, labels=labels)

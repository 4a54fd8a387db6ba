"""A shadow version: a candidate computes a copy of a share of the primary version's images, with spare capacity
only, and the two answers are compared label by label.

Before a new version takes traffic its owner wants to know what it would change, per label: how often it decides
differently from the version serving now (the flip rate, at each version's own thresholds) and by how much its
probabilities move. The copy is never awaited by the request, so the primary answer never waits for it; and it is
only made when there is spare capacity, that is when the primary has nothing to do but this image and the candidate
is idle, and is dropped and counted otherwise: a busy server spends nothing on it, and at most one shadow batch
runs beside the primary's.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from labelserve.label_stats import positives, probabilities
from service.batching import DynamicBatcher, Outputs
from service.errors import ServiceError
from service.sliding_window import SlidingSums

__all__ = ["Shadow", "ShadowReport"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShadowReport:
    """What the candidate changes against the primary over the window, labels with the most flips first."""

    model: str
    primary_version: int
    candidate_version: int
    share: float
    compared: int
    mirrored_total: int
    dropped_total: int
    labels: list[dict[str, object]]  # name, flip_rate, mean_change (candidate - primary probability)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready, for the statistics endpoint and the page."""
        return {"primary_version": self.primary_version, "candidate_version": self.candidate_version,
                "share": self.share, "compared": self.compared, "mirrored_total": self.mirrored_total,
                "dropped_total": self.dropped_total, "labels": self.labels}


class Shadow:
    """Mirrors a share of a primary version's images onto a candidate's batcher and compares the answers."""

    def __init__(self, model: str, primary_version: int, candidate_version: int, candidate: DynamicBatcher,
                 labels: Sequence[str], primary_thresholds: Sequence[float], candidate_thresholds: Sequence[float],
                 logits_output: str, share: float, window_images: int, window_s: float,
                 rng: random.Random | None = None) -> None:
        self.model = model
        self.primary_version = primary_version
        self.candidate_version = candidate_version
        self.share = share
        self.labels = tuple(labels)
        self._candidate = candidate
        self._logits = logits_output
        self._primary_thresholds = np.asarray(primary_thresholds, dtype=np.float64)
        self._candidate_thresholds = np.asarray(candidate_thresholds, dtype=np.float64)
        self._rng = rng or random.Random()
        self._window = SlidingSums({"flips": (len(labels),), "change": (len(labels),)}, window_images, window_s,
                                   dtype=np.float64)
        self.mirrored_total = 0
        self.dropped_total = 0
        self.failed_total = 0

    def mirror(self, array: np.ndarray, primary: asyncio.Future[Outputs], primary_batcher: DynamicBatcher) -> None:
        """Maybe send a copy of `array` to the candidate; compare once both answers are in. Never raises."""
        if self._rng.random() >= self.share:
            return
        if self._candidate.pending or primary_batcher.pending > 1:
            self.dropped_total += 1  # no spare capacity: the candidate is busy, or the primary has more than this
            return
        try:
            copy = self._candidate.submit(array)
        except ServiceError:  # the candidate's queue is full or it is stopping
            self.dropped_total += 1
            return
        self.mirrored_total += 1

        settled = False

        def compare_when_both_are_in(_future: asyncio.Future[Outputs]) -> None:
            nonlocal settled  # both callbacks may run after both futures are done: compare once
            if settled or not (primary.done() and copy.done()):
                return
            settled = True
            if primary.cancelled() or primary.exception() is not None:
                return  # the primary request failed or left: nothing to compare against
            if copy.cancelled() or copy.exception() is not None:
                self.failed_total += 1
                return
            self.compare(primary.result()[self._logits], copy.result()[self._logits])

        primary.add_done_callback(compare_when_both_are_in)
        copy.add_done_callback(compare_when_both_are_in)

    def compare(self, primary_logits: np.ndarray, candidate_logits: np.ndarray) -> None:
        """Count one image answered by both versions: `[C]` logits each."""
        flips = positives(primary_logits, self._primary_thresholds) != positives(candidate_logits,
                                                                                   self._candidate_thresholds)
        change = probabilities(candidate_logits) - probabilities(primary_logits)
        self._window.add(1, flips=flips.astype(np.float64), change=change.astype(np.float64))

    def report(self) -> ShadowReport:
        """Per label over the window: flip rate and mean probability change, most flips first."""
        totals = self._window.totals()
        compared = totals.items
        labels = [{"name": name,
                   "flip_rate": float(totals.sums["flips"][i] / compared) if compared else None,
                   "mean_change": float(totals.sums["change"][i] / compared) if compared else None}
                  for i, name in enumerate(self.labels)]
        labels.sort(key=lambda entry: -(entry["flip_rate"] or 0.0))
        return ShadowReport(self.model, self.primary_version, self.candidate_version, self.share, compared,
                            self.mirrored_total, self.dropped_total, labels)

"""Per-label statistics of a model's answers, shared by export (the baseline on the validation split) and the service
(the same statistics over a window of served answers): fixed probability bins, histograms, and a drift score.

Bins are fixed, so a baseline written by one release compares with a window counted by another. They are uniform in
logit space, not in probability: a multi-label model answers most labels with probabilities near 0 (most labels are
absent from most images) and its positives near 1, so ten uniform probability bins put ~95 % of the mass in
[0, 0.1) and see nothing move inside it. Edges at logits -7, -6, ..., 7 (probabilities 0.0009 to 0.9991) give 16 bins
that resolve both tails and the thresholds in between.

The drift score is the population stability index (PSI) between the baseline's histogram and the window's:
sum((w - b) * ln(w / b)) over bins, with half a count added to every bin so that an empty bin is finite. PSI is what
model-risk teams already read (< 0.1 stable, 0.1-0.25 moving, > 0.25 shifted: the conventional cut this project
flags at), it grows with both the mass that moved and how far it moved in the log ratio, and for a window of N
answers against a baseline of M with B bins it has an expected value of about (B - 1) * (1/N + 1/M) without any
drift: 0.07 at N = 500, M = 600, well under the flag. Its weakness, noise at small N, is why a label is only flagged
once the window holds `min_images` answers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["BIN_LOGIT_EDGES", "NUM_BINS", "Baseline", "bin_counts", "expected_noise", "population_stability",
           "positives", "probabilities"]

BIN_LOGIT_EDGES: tuple[float, ...] = tuple(float(edge) for edge in range(-7, 8))  # 15 inner edges -> 16 bins
NUM_BINS = len(BIN_LOGIT_EDGES) + 1
_EDGES = np.asarray(BIN_LOGIT_EDGES, dtype=np.float32)
_SMOOTHING = 0.5  # counts added to every bin before comparing


class Baseline(BaseModel):
    """What a model did on its validation split, per label: the reference its served answers are compared with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    images: int = Field(ge=1, description="validation images the statistics come from")
    source: str = Field(description="where the images came from, for the reader")
    bin_logit_edges: tuple[float, ...] = Field(default=BIN_LOGIT_EDGES,
                                               description="inner edges of the histogram bins, in logits")
    positive_rate: tuple[float, ...] = Field(description="per label: share of images at or above its threshold")
    histograms: tuple[tuple[int, ...], ...] = Field(description="per label: images per probability bin")
    mean_labels_per_image: float = Field(ge=0.0)

    @model_validator(mode="after")
    def _consistent(self) -> Baseline:
        if len(self.histograms) != len(self.positive_rate):
            raise ValueError(f"{len(self.histograms)} histograms for {len(self.positive_rate)} labels")
        bins = len(self.bin_logit_edges) + 1
        for histogram in self.histograms:
            if len(histogram) != bins or sum(histogram) != self.images:
                raise ValueError(f"every histogram needs {bins} bins adding up to {self.images} images")
        return self

    @classmethod
    def from_logits(cls, logits: np.ndarray, thresholds: Sequence[float], source: str) -> Baseline:
        """The baseline of `logits [N, C]` (the served network's raw outputs) at the model's `thresholds`."""
        if logits.ndim != 2 or len(logits) == 0:
            raise ValueError(f"a baseline needs logits of shape [N >= 1, C], got {logits.shape}")
        hits = positives(logits, thresholds)
        return cls(images=len(logits), source=source, positive_rate=tuple(float(r) for r in hits.mean(axis=0)),
                   histograms=tuple(tuple(int(c) for c in row) for row in bin_counts(logits)),
                   mean_labels_per_image=float(hits.sum(axis=1).mean()))

    def histogram_array(self) -> np.ndarray:
        """The histograms as `[C, bins]` counts."""
        return np.asarray(self.histograms, dtype=np.int64)

    def at_thresholds(self, thresholds: Sequence[float]) -> Baseline:
        """The same baseline with its positive rates estimated at other thresholds (a recalibrated version shares the
        weights, so its probabilities are the same): the share of each histogram above the new threshold, spreading
        a bin's images evenly over its logits (the two open bins taken as one logit wide)."""
        edges = np.asarray((self.bin_logit_edges[0] - 1, *self.bin_logit_edges, self.bin_logit_edges[-1] + 1))
        cuts = np.clip(np.nan_to_num(np.log(np.asarray(thresholds, dtype=np.float64))
                                     - np.log1p(-np.asarray(thresholds, dtype=np.float64)),
                                     posinf=edges[-1], neginf=edges[0]), edges[0], edges[-1])
        counts = self.histogram_array().astype(np.float64)
        above = np.clip((edges[None, 1:] - cuts[:, None]) / np.diff(edges)[None, :], 0.0, 1.0)  # [C, bins]
        rates = (counts * above).sum(axis=1) / self.images
        return self.model_copy(update={
            "positive_rate": tuple(float(r) for r in rates), "mean_labels_per_image": float(rates.sum()),
            "source": f"{self.source}; positive rates estimated at recalibrated thresholds from its histograms"})


def probabilities(logits: np.ndarray) -> np.ndarray:
    """The logistic function in float64, numerically stable: the probabilities the service answers with, so that
    what is counted here decides exactly as `/predict` does."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(logits, dtype=np.float64)))


def positives(logits: np.ndarray, thresholds: np.ndarray | Sequence[float]) -> np.ndarray:
    """`[N, C]` booleans: which labels each image gets at the model's per-label thresholds."""
    return probabilities(logits) >= np.asarray(thresholds, dtype=np.float64)


def bin_counts(logits: np.ndarray) -> np.ndarray:
    """`[C, bins]` counts of `logits [N, C]` per label and probability bin."""
    labels = logits.shape[1]
    bins = np.searchsorted(_EDGES, logits, side="right")  # [N, C] in 0..NUM_BINS-1
    flat = (np.arange(labels) * NUM_BINS + bins).ravel()
    return np.bincount(flat, minlength=labels * NUM_BINS).reshape(labels, NUM_BINS)


def population_stability(expected: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """PSI per label between `expected [C, bins]` and `observed [C, bins]` counts (module docstring)."""
    expected = expected.astype(np.float64) + _SMOOTHING
    observed = observed.astype(np.float64) + _SMOOTHING
    expected /= expected.sum(axis=1, keepdims=True)
    observed /= observed.sum(axis=1, keepdims=True)
    return ((observed - expected) * np.log(observed / expected)).sum(axis=1)


def expected_noise(bins: int, window: int, baseline: int) -> float:
    """The PSI two samples of the same distribution show on average, for a reader choosing `min_images`."""
    return (bins - 1) * (1.0 / max(window, 1) + 1.0 / max(baseline, 1)) if window else math.inf

"""The per-label statistics export writes and the service compares: bins, the baseline, PSI and its noise."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from labelserve.label_stats import (
    NUM_BINS,
    Baseline,
    bin_counts,
    expected_noise,
    population_stability,
    positives,
)


def test_bins_are_uniform_in_logits_and_cover_both_tails() -> None:
    logits = np.array([[-50.0, -7.5, -0.1, 0.0, 6.99, 7.0, 50.0]]).T  # 7 images, 1 label
    counts = [0] * 16
    for bin_index in (0, 0, 7, 8, 14, 15, 15):  # below -7; [-1, 0); [0, 1); [6, 7); 7 and above
        counts[bin_index] += 1
    assert bin_counts(logits)[0].tolist() == counts
    assert bin_counts(logits).shape == (1, NUM_BINS) == (1, 16)


def test_labels_are_decided_as_the_service_answers_them() -> None:
    thresholds = [0.5, 0.9, 0.0, 1.0]
    logits = np.array([[0.0, 2.0, -100.0, 100.0], [-0.01, 2.5, 0.0, 0.0]])
    assert positives(logits, thresholds).tolist() == [[True, False, True, True], [False, True, True, False]]


def test_a_baseline_summarises_logits_and_checks_itself() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(-3, 3, size=(500, 4))
    baseline = Baseline.from_logits(logits, [0.5] * 4, "500 test images")
    assert baseline.images == 500 and all(sum(h) == 500 for h in baseline.histograms)
    assert baseline.positive_rate == pytest.approx(tuple((logits >= 0).mean(axis=0)))
    assert baseline.mean_labels_per_image == pytest.approx((logits >= 0).sum(axis=1).mean())
    with pytest.raises(ValidationError, match="adding up"):
        Baseline(images=3, source="x", positive_rate=(0.5,), histograms=((1,) * NUM_BINS,), mean_labels_per_image=0)


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(1)
    baseline = bin_counts(rng.normal(-3, 2, size=(600, 50)))
    same = population_stability(baseline, bin_counts(rng.normal(-3, 2, size=(500, 50))))
    shifted = population_stability(baseline, bin_counts(rng.normal(-6, 2, size=(500, 50))))
    assert same.max() < 0.25 and same.mean() == pytest.approx(expected_noise(NUM_BINS, 500, 600), rel=0.5)
    assert shifted.min() > 1.0
    assert population_stability(baseline, baseline).max() == pytest.approx(0.0)

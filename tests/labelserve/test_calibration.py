"""Thresholds from feedback: each policy picks what it promises, labels without support keep theirs, and scores are
measured on held-out feedback only."""

from __future__ import annotations

import numpy as np
import pytest

from labelserve.calibration import Policy, calibrate, choose_threshold, holdout_mask, scores


def test_policies_parse_and_refuse_with_what_is_accepted() -> None:
    assert Policy.parse("f1") == Policy("f1") and str(Policy.parse("precision:0.95")) == "precision:0.95"
    assert Policy.parse("recall:0.9") == Policy("recall", 0.9)
    for bad in ("f2", "precision", "precision:1.5", "recall:x", "f1:0.5"):
        with pytest.raises(ValueError, match="use f1, precision"):
            Policy.parse(bad)


def test_each_policy_picks_the_threshold_it_promises() -> None:
    probabilities = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    truth = np.array([True, True, False, True, False, True, False, False])
    f1 = choose_threshold(probabilities, truth, Policy("f1"))
    assert f1 == pytest.approx(0.35)  # keeping the top six gives F1 0.8, the best
    precise = choose_threshold(probabilities, truth, Policy("precision", 1.0))
    assert precise == pytest.approx(0.75) and scores(probabilities, truth, precise).precision == 1.0
    recall = choose_threshold(probabilities, truth, Policy("recall", 0.75))
    assert recall == pytest.approx(0.55) and scores(probabilities, truth, recall).recall == 0.75
    assert choose_threshold(probabilities, ~truth & (probabilities < 0), Policy("precision", 0.9)) is None


def test_the_holdout_is_stable_and_about_its_share() -> None:
    ids = [f"answer-{i}" for i in range(5000)]
    held = holdout_mask(ids, 0.3)
    assert (held == holdout_mask(ids, 0.3)).all() and 0.27 < held.mean() < 0.33


def test_calibration_lowers_a_threshold_set_too_high_and_keeps_labels_without_support() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    truth = np.stack([rng.random(n) < 0.3, rng.random(n) < 0.3], axis=1)
    # label 0's probabilities are a darkened version of a good model's: present ~0.35, absent ~0.05
    probabilities = np.where(truth, rng.uniform(0.25, 0.45, (n, 2)), rng.uniform(0.0, 0.15, (n, 2)))
    known = truth.astype(np.int8)
    known[30:, 1] = -1  # label 1: 30 known answers only (about 21 of them fitting)
    ids = [f"a{i}" for i in range(n)]
    report = calibrate(("dim", "rare"), (0.5, 0.5), probabilities, known, ids, Policy("f1"), min_support=30)
    dim, rare = report.labels
    assert 0.15 < dim.new_threshold < 0.25 and dim.before.f1 == 0.0 and dim.after.f1 > 0.95
    assert rare.new_threshold == 0.5 and "--min-support 30" in rare.kept_because
    assert report.micro_after.f1 > report.micro_before.f1 and report.changed == 1
    assert report.holdout_answers + report.fitting_answers == n
    assert dim.holdout == report.holdout_answers and dim.support == report.fitting_answers

"""The paired bootstrap (bench/paired_bootstrap.py) on constructed data whose answer is known, and its metrics
against training.metrics."""

from __future__ import annotations

import numpy as np
import pytest

from bench import paired_bootstrap as pb
from training import metrics


def test_vectorised_average_precision_equals_the_training_metric_ties_included() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, size=(200, 9)) / 5.0  # few distinct values: many ties
    targets = (rng.random((200, 9)) < 0.3).astype(np.float32)
    targets[:, 4] = 0  # a label without positives
    ours = pb.average_precision_columns(scores, targets)
    reference = [metrics.average_precision(scores[:, c], targets[:, c]) for c in range(9)]
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-12)
    assert np.isnan(ours[4])
    continuous = rng.random((300, 7))
    labels = (rng.random((300, 7)) < 0.2).astype(np.float32)
    reference_map = metrics.mean_average_precision(continuous, labels)["map"]
    assert pb.mean_average_precision(continuous, labels) == pytest.approx(reference_map, abs=1e-12)
    assert pb.mean_average_precision(continuous, labels, np.array([1, 3])) == pytest.approx(
        np.mean([metrics.average_precision(continuous[:, c], labels[:, c]) for c in (1, 3)]), abs=1e-12)


def test_mean_accuracy_equals_the_attribute_metric() -> None:
    rng = np.random.default_rng(1)
    probs, targets = rng.random((150, 6)), (rng.random((150, 6)) < 0.4).astype(np.float32)
    assert pb.mean_accuracy(probs, targets) == pytest.approx(metrics.attribute_metrics(probs, targets)["mA"],
                                                             abs=1e-12)


def _pointing(run: tuple[np.ndarray, np.ndarray], images: np.ndarray) -> np.ndarray:
    hits, pairs = run
    return np.array([pb.pointing_game(hits[images], pairs[images])])


def test_a_known_difference_is_inside_a_narrow_interval_and_reproduces() -> None:
    """A hits 70 % of pairs, B 50 %, drawn per image: the difference is 0.2 and the interval says so."""
    rng = np.random.default_rng(2)
    pairs = np.ones(3000, dtype=int)
    a = [(rng.random(3000) < 0.7, pairs) for _ in range(3)]
    b = [(rng.random(3000) < 0.5, pairs) for _ in range(3)]
    (difference,) = pb.paired_bootstrap(_pointing, a, b, 3000, replicates=400)
    assert difference.low < 0.2 < difference.high
    assert difference.high - difference.low < 0.08
    assert difference.verdict == "reproduces"
    (swapped,) = pb.paired_bootstrap(_pointing, b, a, 3000, replicates=400)
    assert swapped.verdict == "reversed"
    assert swapped.mean == pytest.approx(-difference.mean)


def test_identical_methods_are_level_and_equal_ones_give_a_zero_interval() -> None:
    rng = np.random.default_rng(3)
    pairs = np.ones(500, dtype=int)
    same = [(rng.random(500) < 0.6, pairs) for _ in range(3)]
    (zero,) = pb.paired_bootstrap(_pointing, same, same, 500, replicates=200)
    assert (zero.mean, zero.low, zero.high) == (0.0, 0.0, 0.0) and zero.verdict == "level"
    other = [(rng.random(500) < 0.6, pairs) for _ in range(3)]  # same rate, independent draws
    (noise,) = pb.paired_bootstrap(_pointing, same, other, 500, replicates=400)
    assert noise.low < 0 < noise.high and noise.verdict == "level"


def test_a_difference_one_seed_reverses_is_level() -> None:
    """Every image agrees within a seed (no image noise), but seed 1 reverses seeds 0 and 2: the seed level of the
    bootstrap keeps the interval over 0 (all three draws of seed 1 happen in 1/27 of the replicates)."""
    pairs = np.ones(400, dtype=int)
    ones = np.ones(400, dtype=bool)
    half = np.arange(400) % 2 == 0
    a = [(ones, pairs), (half, pairs), (ones, pairs)]
    b = [(half, pairs), (ones, pairs), (half, pairs)]
    (difference,) = pb.paired_bootstrap(_pointing, a, b, 400, replicates=2000)
    assert difference.per_seed == pytest.approx((0.5, -0.5, 0.5))
    assert difference.mean == pytest.approx(0.5 / 3)
    assert difference.low == pytest.approx(-0.5, abs=0.05) and difference.high == pytest.approx(0.5, abs=0.05)
    assert difference.verdict == "level"


def test_several_statistics_at_once_and_map_with_a_perfect_ranker() -> None:
    """A ranks every positive first (AP 1), B scores at random: mAP and the tail's mAP both reproduce, and the point
    estimate is the mean over seeds on all images."""
    rng = np.random.default_rng(4)
    targets = (rng.random((400, 8)) < 0.25).astype(np.float32)
    tail = np.array([6, 7])
    perfect = [targets + 0.01 * rng.random(targets.shape) for _ in range(2)]
    random = [rng.random(targets.shape) for _ in range(2)]

    def both(probs: np.ndarray, images: np.ndarray) -> np.ndarray:
        return np.array([pb.mean_average_precision(probs[images], targets[images]),
                         pb.mean_average_precision(probs[images], targets[images], tail)])

    overall, rare = pb.paired_bootstrap(both, perfect, random, 400, replicates=200)
    expected = np.mean([1 - pb.mean_average_precision(r, targets) for r in random])
    assert overall.mean == pytest.approx(expected)
    assert overall.verdict == rare.verdict == "reproduces"
    assert overall.low > 0.5


def test_verdicts_and_unpaired_input() -> None:
    assert (pb.verdict(0.1, 0.3), pb.verdict(-0.1, 0.3), pb.verdict(-0.3, -0.1), pb.verdict(0.0, 0.2)) == (
        "reproduces", "level", "reversed", "level")
    with pytest.raises(ValueError, match="paired"):
        pb.paired_bootstrap(_pointing, [], [], 10)
    with pytest.raises(ValueError, match="paired"):
        pb.paired_bootstrap(_pointing, [(np.ones(3), np.ones(3))], [], 3)

"""mAP against scikit-learn, the classes-without-positives rule, and the ML-GCN threshold metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from training.metrics import (
    attribute_metrics,
    average_precision,
    calibrate_thresholds,
    mean_average_precision,
    pointing_game,
    threshold_metrics,
)


@pytest.mark.parametrize("seed", range(5))
def test_map_equals_sklearn_on_untied_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.random((200, 12))  # continuous: no ties
    targets = (rng.random((200, 12)) < 0.2).astype(np.float32)
    targets[0] = 1  # every class has a positive
    result = mean_average_precision(scores, targets)
    expected = [average_precision_score(targets[:, c], scores[:, c]) for c in range(12)]
    np.testing.assert_allclose(result["per_class"], expected, rtol=1e-12)
    assert result["map"] == pytest.approx(np.mean(expected), rel=1e-12)


def test_ap_is_mean_precision_at_each_positive_rank() -> None:
    # ranks of positives 1, 3, 4 out of 5 -> (1/1 + 2/3 + 3/4) / 3
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    targets = np.array([1, 0, 1, 1, 0])
    assert average_precision(scores, targets) == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)


def test_ties_do_not_depend_on_order() -> None:
    scores = np.array([0.5, 0.5, 0.5, 0.1])
    assert average_precision(scores, np.array([1, 0, 0, 1])) == average_precision(scores, np.array([0, 0, 1, 1]))
    assert average_precision(scores, np.array([1, 0, 0, 1])) == pytest.approx(
        average_precision_score([1, 0, 0, 1], scores))


def test_classes_without_positives_are_left_out_of_the_mean() -> None:
    scores = np.array([[0.9, 0.2, 0.4], [0.1, 0.8, 0.3]])
    targets = np.array([[1, 0, 0], [0, 1, 0]])
    result = mean_average_precision(scores, targets)
    assert math.isnan(result["per_class"][2])
    assert result["num_classes_without_positives"] == 1
    assert result["map"] == 1.0


def test_threshold_metrics_by_hand() -> None:
    probs = np.array([[0.9, 0.6, 0.1], [0.2, 0.7, 0.8], [0.6, 0.4, 0.3]])
    targets = np.array([[1, 0, 0], [0, 1, 1], [0, 1, 0]])
    m = threshold_metrics(probs, targets, 0.5)
    # per class: Nc = [1, 1, 1], Np = [2, 2, 1], Ng = [1, 2, 1]
    assert m["CP"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    assert m["CR"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert m["OP"] == pytest.approx(3 / 5)
    assert m["OR"] == pytest.approx(3 / 4)
    assert m["OF1"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    top1 = threshold_metrics(probs, targets, 0.5, top_k=1)
    # only each row's best label may count: [0], [2], [0] -> Nc [1, 0, 1], Np [2, 0, 1]
    assert top1["OP"] == pytest.approx(2 / 3)
    assert top1["OR"] == pytest.approx(2 / 4)


def test_attribute_metrics_by_hand() -> None:
    probs = np.array([[0.9, 0.2, 0.7], [0.1, 0.8, 0.4], [0.6, 0.3, 0.2]])
    targets = np.array([[1, 0, 1], [0, 1, 1], [0, 0, 0]])
    m = attribute_metrics(probs, targets)
    # predicted: [1,0,1], [0,1,0], [1,0,0]
    # attr0: TP 1/1, TN 1/2 -> 0.75; attr1: TP 1/1, TN 2/2 -> 1; attr2: TP 1/2, TN 1/1 -> 0.75
    assert m["mA"] == pytest.approx((0.75 + 1 + 0.75) / 3)
    # per image: acc 2/2, 1/2, 0/1 ; prec 1, 1, 0 ; rec 1, 0.5, 0 (0/0 -> 0 with eps)
    assert m["instance_acc"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert m["instance_prec"] == pytest.approx(2 / 3)
    assert m["instance_rec"] == pytest.approx(0.5)
    assert m["instance_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_calibration_maximises_each_labels_f1() -> None:
    rng = np.random.default_rng(0)
    targets = (rng.random((400, 3)) < 0.3).astype(int)
    # label 0 separable at ~0.3, label 1 separable at ~0.8, label 2 has no positives
    targets[:, 2] = 0
    probs = np.where(targets == 1, rng.uniform(0.35, 0.6, targets.shape), rng.uniform(0.0, 0.25, targets.shape))
    probs[:, 1] = np.where(targets[:, 1] == 1, rng.uniform(0.85, 1.0, 400), rng.uniform(0.5, 0.8, 400))
    thresholds = calibrate_thresholds(probs, targets, default=0.5)
    assert 0.25 < thresholds[0] < 0.35 and 0.8 < thresholds[1] < 0.85 and thresholds[2] == 0.5
    for label in (0, 1):
        predicted = probs[:, label] >= thresholds[label]
        assert (predicted == targets[:, label].astype(bool)).all()  # perfect F1 on separable data


def test_pointing_game() -> None:
    attention = np.zeros((2, 2, 4, 4))
    attention[0, 0, 0, 0] = 1  # top-left cell -> centre (12.5, 12.5) in a 100x100 image
    attention[0, 1, 3, 3] = 1  # bottom-right -> (87.5, 87.5)
    attention[1, 0, 0, 3] = 1  # top-right -> (175, 12.5) in a 200x100 image
    targets = np.array([[1, 1], [1, 0]])
    boxes = [{0: [(0, 0, 30, 30)], 1: [(0, 0, 30, 30)]}, {0: [(150, 0, 50, 50)]}]
    assert pointing_game(attention, targets, boxes, [(100, 100), (200, 100)]) == pytest.approx(2 / 3)
    assert np.isnan(pointing_game(attention, np.zeros((2, 2)), boxes, [(100, 100), (200, 100)]))

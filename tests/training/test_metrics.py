"""mAP against scikit-learn, the classes-without-positives rule, and the ML-GCN threshold metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from training.metrics import average_precision, mean_average_precision, threshold_metrics


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

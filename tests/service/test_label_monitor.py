"""The label monitor's window (by count and by time, bounded memory) and its reports against a baseline."""

from __future__ import annotations

import numpy as np

from labelserve.label_stats import Baseline
from service.label_monitor import LabelMonitor, MonitorSettings
from service.sliding_window import SlidingSums

LABELS = ("cat", "dog", "car")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _logits(rng: np.random.Generator, count: int, mean: tuple[float, ...] = (-3.0, -3.0, -3.0)) -> np.ndarray:
    return rng.normal(mean, 1.5, size=(count, len(mean)))


def test_the_window_keeps_the_newest_items_and_forgets_old_ones() -> None:
    clock = Clock()
    window = SlidingSums({"x": (2,)}, max_items=100, max_age_s=60, clock=clock)
    for _ in range(300):
        window.add(1, x=np.array([1, 2]))
    totals = window.totals()
    assert 90 <= totals.items <= 100 and totals.sums["x"].tolist() == [totals.items, 2 * totals.items]
    clock.now = 61.0
    assert window.totals().items == 0  # nothing answered for longer than the window: empty


def test_reports_say_no_baseline_then_warming_up_then_ok_then_which_label_drifted() -> None:
    rng = np.random.default_rng(0)
    settings = MonitorSettings(window_images=500, window_s=3600, drift_threshold=0.25, min_images=200)
    without = LabelMonitor("m", 1, LABELS, [0.5] * 3, None, settings)
    without.observe(_logits(rng, 300))
    assert without.report().status == "no baseline" and without.report().labels[0].drift is None

    baseline = Baseline.from_logits(_logits(rng, 600), [0.5] * 3, "validation")
    clock = Clock()
    monitor = LabelMonitor("m", 1, LABELS, [0.5] * 3, baseline, settings, clock=clock)
    monitor.observe(_logits(rng, 100))
    assert monitor.report().status == "warming up"
    monitor.observe(_logits(rng, 200))
    report = monitor.report()
    assert report.status == "ok" and report.flagged == [] and report.window_images == 300
    for _ in range(5):  # "dog" now shows in most images: the window fills with the shifted stream
        clock.now += 1
        monitor.observe(_logits(rng, 100, mean=(-3.0, 2.0, -3.0)))
    report = monitor.report()
    assert report.status == "drift" and report.flagged == ["dog"] and report.labels[0].label == "dog"
    dog = report.labels[0]
    assert dog.served_rate > 0.5 > 0.1 > dog.baseline_rate
    assert report.as_dict()["labels"][0]["name"] == "dog" and report.as_dict()["drift_metric"] == "psi"

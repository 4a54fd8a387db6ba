"""Per-label gauges: a 1,000-label model exports only its most drifted labels, and a label that leaves that set
loses its series."""

from __future__ import annotations

import numpy as np

from labelserve.label_stats import Baseline
from service.label_metrics import LabelGauges
from service.label_monitor import LabelMonitor, MonitorSettings
from service.observability import Metrics


def _label_series(metrics: Metrics, name: str) -> dict[str, float]:
    return {sample.labels["label"]: sample.value for family in metrics.registry.collect()
            for sample in family.samples if sample.name == name}


def test_a_thousand_label_model_exports_its_hundred_most_drifted_labels() -> None:
    rng = np.random.default_rng(0)
    labels = [f"label_{i:04d}" for i in range(1000)]
    baseline = Baseline.from_logits(rng.normal(-4, 2, (2000, 1000)), [0.5] * 1000, "synthetic")
    monitor = LabelMonitor("large", 1, labels, [0.5] * 1000, baseline, MonitorSettings(min_images=100))
    shifted = rng.normal(-4, 2, (300, 1000))
    shifted[:, 500] += 4  # one label clearly drifts
    monitor.observe(shifted)
    metrics = Metrics()
    gauges = LabelGauges(metrics, cap=100)
    gauges.refresh([monitor.report()], [])
    drift = _label_series(metrics, "labelserve_label_drift")
    assert len(drift) == 100 and "label_0500" in drift and max(drift, key=drift.get) == "label_0500"
    assert len(_label_series(metrics, "labelserve_label_positive_rate")) == 100
    summary = {sample.name: sample.value for family in metrics.registry.collect() for sample in family.samples
               if sample.name in ("labelserve_labels_flagged", "labelserve_label_window_images")}
    assert summary == {"labelserve_labels_flagged": 1.0, "labelserve_label_window_images": 300.0}

    calm = LabelMonitor("large", 1, labels, [0.5] * 1000, baseline, MonitorSettings(min_images=100))
    calm.observe(rng.normal(-4, 2, (300, 1000)))
    gauges.refresh([calm.report()], [])  # the same version, now without the drifted label on top
    after = _label_series(metrics, "labelserve_label_drift")
    assert len(after) == 100 and set(after) != set(drift)

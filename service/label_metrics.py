"""Per-label health and shadow comparisons as Prometheus gauges, refreshed every LABELSERVE_MONITOR_REFRESH_S.

Per-label series are capped per model version (LABELSERVE_MONITOR_LABEL_SERIES, 100): a model with more labels (an
ML-Decoder with 1,000) exports only its most drifted (or, for a shadow, most flipped) labels at each refresh, so the
series count stays bounded whatever the label count; every label is in `GET /v2/models/{name}/stats` and on the
page. A label that leaves the exported set loses its series (set to NaN under several workers, whose values live in
files that cannot drop one). Summary gauges (labels flagged, window size, labels per image) are always exported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Sequence

from prometheus_client import Gauge

from service.feedback_window import FeedbackReport
from service.label_monitor import HealthReport
from service.observability import Metrics
from service.repository import ModelRepository
from service.shadow import ShadowReport

__all__ = ["LabelGauges", "refresh_forever"]

logger = logging.getLogger(__name__)


class LabelGauges:
    """Writes health reports and shadow reports into their gauges, keeping at most `cap` label series each."""

    def __init__(self, metrics: Metrics, cap: int) -> None:
        self._metrics = metrics
        self._cap = cap
        self._exported: dict[tuple[str, ...], set[str]] = {}  # series key -> labels exported last time

    def refresh(self, reports: Sequence[HealthReport], shadows: Sequence[ShadowReport],
                feedback: Sequence[FeedbackReport] = ()) -> None:
        """Set every gauge from the latest reports."""
        metrics = self._metrics
        for window in feedback:
            key = (window.model, str(window.version))
            metrics.feedback_answers.labels(*key).set(window.answers)
            shown_feedback = [entry for entry in window.labels if entry["precision"] is not None
                              or entry["recall"] is not None][:self._cap]  # most wrong answers first
            for entry in shown_feedback:  # NaN where feedback cannot say yet (no answer given, or none present)
                for gauge, value in ((metrics.label_feedback_precision, entry["precision"]),
                                     (metrics.label_feedback_recall, entry["recall"])):
                    number = _number(value)
                    gauge.labels(*key, str(entry["name"])).set(math.nan if number is None else number)
            self._drop_rest(("feedback", *key), {str(e["name"]) for e in shown_feedback},
                            (metrics.label_feedback_precision, metrics.label_feedback_recall), key)
        for report in reports:
            model = (report.model, str(report.version))
            metrics.label_drift_threshold.labels(*model).set(report.drift_threshold)
            metrics.labels_flagged.labels(*model).set(len(report.flagged))
            metrics.label_window_images.labels(*model).set(report.window_images)
            for source, value in (("served", report.served_labels_per_image),
                                  ("baseline", report.baseline_labels_per_image)):
                metrics.labels_per_image.labels(*model, source).set(math.nan if value is None else value)
            shown = report.labels[:self._cap]  # most drifted first
            for health in shown:
                self._set(metrics.label_positive_rate, (*model, health.label), health.served_rate)
                self._set(metrics.label_baseline_rate, (*model, health.label), health.baseline_rate)
                self._set(metrics.label_drift, (*model, health.label), health.drift)
            self._drop_rest(("label", *model), {h.label for h in shown},
                            (metrics.label_positive_rate, metrics.label_baseline_rate, metrics.label_drift), model)
        for shadow in shadows:
            key = (shadow.model, str(shadow.primary_version), str(shadow.candidate_version))
            metrics.shadow_compared.labels(*key).set(shadow.compared)
            metrics.shadow_mirrored.labels(*key).set(shadow.mirrored_total)
            metrics.shadow_dropped.labels(*key).set(shadow.dropped_total)
            shown_shadow = shadow.labels[:self._cap]  # most flipped first
            for entry in shown_shadow:
                self._set(metrics.shadow_flip_rate, (*key, str(entry["name"])), _number(entry["flip_rate"]))
                self._set(metrics.shadow_change, (*key, str(entry["name"])), _number(entry["mean_change"]))
            self._drop_rest(("shadow", *key), {str(e["name"]) for e in shown_shadow},
                            (metrics.shadow_flip_rate, metrics.shadow_change), key)

    def _set(self, gauge: Gauge, labels: tuple[str, ...], value: float | None) -> None:
        if value is None:
            self._remove(gauge, labels)
        else:
            gauge.labels(*labels).set(value)

    def _remove(self, gauge: Gauge, labels: tuple[str, ...]) -> None:
        if self._metrics.multiprocess_dir is not None:
            gauge.labels(*labels).set(math.nan)
        else:
            with contextlib.suppress(KeyError):  # never exported
                gauge.remove(*labels)

    def _drop_rest(self, key: tuple[str, ...], shown: set[str], gauges: tuple[Gauge, ...],
                   prefix: tuple[str, ...]) -> None:
        for label in self._exported.get(key, set()) - shown:
            for gauge in gauges:
                self._remove(gauge, (*prefix, label))
        self._exported[key] = shown


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


async def refresh_forever(repository: ModelRepository, gauges: LabelGauges, interval_s: float) -> None:
    """Refresh the gauges from every served version every `interval_s` until cancelled; a failure is logged and the
    next refresh tries again."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            reports = [served.monitor.report() for served in repository.models() if served.monitor is not None]
            gauges.refresh(reports, [shadow.report() for shadow in repository.shadows()],
                           [served.feedback.report() for served in repository.models()])
        except Exception:  # a dead refresher would freeze every label gauge silently
            logger.exception("refreshing the per-label gauges failed; retrying in %.1f s", interval_s)

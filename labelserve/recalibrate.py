"""`labelserve calibrate`'s two outputs: the report as a table, and a new model version with the new thresholds that
shares its source's weights (hard links: no second copy of an engine)."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from labelserve.bundle import Bundle, Calibration, next_version, write_bundle
from labelserve.calibration import CalibrationReport, Scores

__all__ = ["CALIBRATION_FILENAME", "format_report", "write_calibrated_version"]

CALIBRATION_FILENAME = "calibration.json"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _scores(before: Scores | None, after: Scores | None) -> str:
    if before is None or after is None:
        return "-"
    return f"{_rate(before.f1)} -> {_rate(after.f1)}"


def format_report(report: CalibrationReport) -> str:
    """One line per label (old and new threshold, held-out F1/precision/recall before -> after, support), then the
    held-out micro scores."""
    rows = [("label", "threshold", "held-out F1", "precision", "recall", "support", "held out", "note")]
    for label in report.labels:
        rows.append((label.label, f"{label.old_threshold:.3f} -> {label.new_threshold:.3f}",
                     _scores(label.before, label.after),
                     f"{_rate(label.before.precision)} -> {_rate(label.after.precision)}",
                     f"{_rate(label.before.recall)} -> {_rate(label.after.recall)}",
                     f"{label.support} ({label.positives} present)", str(label.holdout), label.kept_because))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    micro = _scores(report.micro_before, report.micro_after)
    lines += ["", f"{report.answers} answers with feedback: {report.fitting_answers} to fit, {report.holdout_answers} "
                  f"held out; policy {report.policy}; {report.changed} of {len(report.labels)} thresholds moved; "
                  f"held-out micro F1 {micro}"]
    return "\n".join(lines) + "\n"


def write_calibrated_version(source: Bundle, report: CalibrationReport) -> Bundle:
    """A new version of `source`'s model: its thresholds replaced, its baseline's positive rates re-estimated at them,
    the report in `calibration.json`, every other file shared with `source`."""
    manifest = source.manifest
    root = source.path.parent.parent
    before, after = report.micro_before, report.micro_after
    calibration = Calibration(
        source_version=manifest.calibration.source_version if manifest.calibration else manifest.version,
        policy=report.policy, answers=report.answers, holdout_answers=report.holdout_answers,
        labels_changed=report.changed, micro_f1_before=before.f1 if before else None,
        micro_f1_after=after.f1 if after else None)
    thresholds = tuple(report.thresholds)
    updated = manifest.model_copy(update={
        "version": next_version(root / manifest.name), "thresholds": thresholds, "calibration": calibration,
        "baseline": manifest.baseline.at_thresholds(thresholds) if manifest.baseline is not None else None,
        "created_at": datetime.now(UTC), "files": {}})
    shared = {name: (source.file(name), digest) for name, digest in manifest.files.items()
              if name != CALIBRATION_FILENAME}
    with tempfile.TemporaryDirectory(prefix="labelserve-calibrate-") as tmp:
        report_path = Path(tmp) / CALIBRATION_FILENAME
        report_path.write_text(json.dumps(report.as_dict(), indent=1) + "\n", encoding="utf-8")
        return write_bundle(root, updated, {CALIBRATION_FILENAME: report_path}, shared=shared)

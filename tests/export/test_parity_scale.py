"""Parity is judged per unit of each output's scale: float32 rounding grows with the values a head produces."""

from __future__ import annotations

import numpy as np

from export.parity import ParityReport, differences_and_scales


def test_logits_are_held_to_the_tolerance_relative_to_their_range() -> None:
    report = ParityReport({"logits": 4e-4, "attention": 3e-5}, 1e-4, (1, 8), 8, {"logits": 5.6, "attention": 0.7})
    assert report.passed and report.allowed("logits") == 1e-4 * 5.6
    assert report.allowed("attention") == 1e-4  # outputs within [-1, 1] keep the absolute tolerance
    small_logits = ParityReport({"logits": 4e-4}, 1e-4, (1,), 1, {"logits": 1.5})
    assert not small_logits.passed
    wrong = ParityReport({"logits": 0.05, "attention": 3e-5}, 1e-4, (1, 8), 8, {"logits": 30.0, "attention": 1.0})
    assert not wrong.passed  # a wrong export is off by far more than float32 rounding
    assert ParityReport({"attention": 2e-4}, 1e-4, (1,), 1, {"attention": 1.0}).passed is False


def test_the_scale_is_the_largest_reference_magnitude_over_every_batch() -> None:
    images = np.arange(6, dtype=np.float32).reshape(6, 1, 1, 1) - 4  # -4 .. 1

    def reference(chunk: np.ndarray) -> list[np.ndarray]:
        return [chunk.reshape(len(chunk), 1) * 2]

    def candidate(chunk: np.ndarray) -> list[np.ndarray]:
        return [chunk.reshape(len(chunk), 1) * 2 + 1e-3]

    worst, scale = differences_and_scales(reference, candidate, ["logits"], images, (1, 6))
    assert abs(worst["logits"] - 1e-3) < 1e-6 and scale == {"logits": 8.0}

"""Per-label decision thresholds fitted to what users said was really in the images, and judged on feedback they
were not fitted to.

Feedback is split by a hash of each answer's id (stable: the same answer always lands on the same side): a share
(30 % by default) is held out. Each label's new threshold is chosen on the rest, among the probabilities its answers
had, by a policy:

- `f1`: the threshold of best F1;
- `precision:P`: the lowest threshold whose precision reaches P (so recall is as high as that precision allows);
- `recall:R`: the highest threshold whose recall reaches R (so precision is as high as that recall allows).

A label keeps its threshold when its fitting feedback has fewer than `min_support` known answers, no positive or no
negative among them, or when no threshold meets the policy. Precision, recall and F1 before (old thresholds) and
after (new) are measured on the held-out feedback only, so a threshold is never judged on the answers it was
fitted to. No NumPy beyond the basics, no torch: the CLI runs it beside the service.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

__all__ = ["CalibrationReport", "LabelCalibration", "Policy", "Scores", "calibrate", "choose_threshold",
           "holdout_mask", "scores"]


@dataclass(frozen=True)
class Policy:
    """How a label's threshold is chosen: best F1, or a precision or recall to reach."""

    kind: Literal["f1", "precision", "recall"]
    target: float | None = None

    @classmethod
    def parse(cls, text: str) -> Policy:
        """`f1`, `precision:0.95` or `recall:0.9`.

        Raises:
            ValueError: anything else, saying what is accepted.
        """
        kind, _, value = text.partition(":")
        if kind == "f1" and not value:
            return cls("f1")
        if kind in ("precision", "recall"):
            try:
                target = float(value)
            except ValueError:
                target = math.nan
            if 0 < target <= 1:
                return cls(kind, target)  # type: ignore[arg-type]
        raise ValueError(f"--policy {text!r}: use f1, precision:<0..1> (e.g. precision:0.95) or recall:<0..1>")

    def __str__(self) -> str:
        return self.kind if self.target is None else f"{self.kind}:{self.target:g}"


@dataclass(frozen=True)
class Scores:
    """Counts and rates of one label's decisions against the truth."""

    known: int
    tp: int
    fp: int
    fn: int
    precision: float | None
    recall: float | None
    f1: float | None


def scores(probabilities: np.ndarray, truth: np.ndarray, threshold: float) -> Scores:
    """Precision, recall and F1 of deciding `probabilities [N] >= threshold` against `truth [N]` booleans."""
    said = probabilities >= threshold
    tp = int((said & truth).sum())
    fp = int((said & ~truth).sum())
    fn = int((~said & truth).sum())
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return Scores(len(truth), tp, fp, fn, precision, recall, f1)


def choose_threshold(probabilities: np.ndarray, truth: np.ndarray, policy: Policy) -> float | None:
    """The threshold `policy` picks for one label (midway between the answer it keeps and the next one below, so it
    does not sit on a fitted answer's probability); None when no threshold meets the policy."""
    order = np.argsort(-probabilities, kind="stable")
    ranked, hits = probabilities[order], truth[order]
    tp = np.cumsum(hits)  # deciding the first k+1 answers positive
    fp = np.cumsum(~hits)
    positives = int(hits.sum())
    last = np.r_[ranked[1:] != ranked[:-1], True]  # a threshold can only fall between distinct probabilities
    precision = tp / (tp + fp)
    recall = tp / max(positives, 1)
    f1 = 2 * tp / (tp + fp + positives)
    if policy.kind == "f1":
        allowed, pick = last, np.argmax(np.where(last, f1, -1.0))
    elif policy.kind == "precision":
        allowed = last & (precision >= policy.target)
        pick = int(np.flatnonzero(allowed)[-1]) if allowed.any() else -1  # the lowest such threshold
    else:
        allowed = last & (recall >= policy.target)
        pick = int(np.flatnonzero(allowed)[0]) if allowed.any() else -1  # the highest such threshold
    if pick < 0 or not allowed[pick]:
        return None
    below = float(ranked[pick + 1]) if pick + 1 < len(ranked) else 0.0
    return (float(ranked[pick]) + below) / 2


def holdout_mask(ids: Sequence[str], share: float) -> np.ndarray:
    """Which answers are held out: a stable hash of the id below `share`."""
    return np.array([int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8).digest(), "big") / 2**64 < share
                     for i in ids], dtype=bool)


@dataclass(frozen=True)
class LabelCalibration:
    """One label: its threshold before and after, why it kept its old one if it did, and held-out scores."""

    label: str
    old_threshold: float
    new_threshold: float
    support: int  # fitting answers with this label known
    positives: int  # of them, present
    holdout: int  # held-out answers with this label known
    before: Scores
    after: Scores
    kept_because: str = ""


@dataclass(frozen=True)
class CalibrationReport:
    """Every label's calibration and the held-out micro scores over all labels, before and after."""

    policy: str
    min_support: int
    holdout_share: float
    answers: int
    fitting_answers: int
    holdout_answers: int
    labels: list[LabelCalibration] = field(default_factory=list)
    micro_before: Scores | None = None
    micro_after: Scores | None = None

    @property
    def thresholds(self) -> list[float]:
        """The new thresholds, in label order."""
        return [label.new_threshold for label in self.labels]

    @property
    def changed(self) -> int:
        """Labels whose threshold moved."""
        return sum(label.new_threshold != label.old_threshold for label in self.labels)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready (the bundle's calibration.json)."""
        return asdict(self)


def _micro(probabilities: np.ndarray, truth: np.ndarray, thresholds: np.ndarray) -> Scores:
    known = truth >= 0
    said = probabilities >= thresholds
    present = truth == 1
    tp, fp, fn = (int((known & a & b).sum()) for a, b in ((said, present), (said, ~present), (~said, present)))
    return Scores(int(known.sum()), tp, fp, fn, tp / (tp + fp) if tp + fp else None,
                  tp / (tp + fn) if tp + fn else None, 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None)


def calibrate(labels: Sequence[str], thresholds: Sequence[float], probabilities: np.ndarray, truth: np.ndarray,
              ids: Sequence[str], policy: Policy, min_support: int = 30,
              holdout_share: float = 0.3) -> CalibrationReport:
    """New thresholds from feedback: `probabilities [N, C]` of the answers, `truth [N, C]` (1, 0, -1 unknown)."""
    held = holdout_mask(ids, holdout_share)
    results = []
    for index, label in enumerate(labels):
        column, known = probabilities[:, index], truth[:, index] >= 0
        present = truth[:, index] == 1
        fit, test = known & ~held, known & held
        old = float(thresholds[index])
        support, positives = int(fit.sum()), int((fit & present).sum())
        new, reason = old, ""
        if support < min_support:
            reason = f"{support} known answers to fit on, under --min-support {min_support}"
        elif positives in (0, support):
            reason = "no " + ("present" if positives == 0 else "absent") + " answer to fit on"
        elif (chosen := choose_threshold(column[fit], present[fit], policy)) is None:
            reason = f"no threshold reaches {policy}"
        else:
            new = chosen
        results.append(LabelCalibration(label, old, new, support, positives, int(test.sum()),
                                        scores(column[test], present[test], old),
                                        scores(column[test], present[test], new), reason))
    report_thresholds = np.array([r.new_threshold for r in results])
    return CalibrationReport(
        str(policy), min_support, holdout_share, len(ids), int((~held).sum()), int(held.sum()), results,
        _micro(probabilities[held], truth[held], np.asarray(thresholds, dtype=np.float64)),
        _micro(probabilities[held], truth[held], report_thresholds))

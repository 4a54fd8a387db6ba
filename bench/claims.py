"""The papers' claims, and the statistics of a multi-seed run that decide them (bench/hard.py writes the runs).

Everything here reads saved predictions (bench/predictions.py), never trains: `summarize` gives each row's mean and
standard deviation over seeds, `decide` each claim's paired difference with its bootstrap interval over validation
images and seeds (bench/paired_bootstrap.py). The tail is the rarest third of the labels by training-set frequency.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bench.paired_bootstrap import average_precision_columns, mean_accuracy, paired_bootstrap, pointing_game
from bench.predictions import RowPredictions

__all__ = ["CLAIMS", "SUMMARY_METRICS", "Claim", "decide", "summarize", "tail_labels"]

TAIL_SHARE = 1 / 3
SUMMARY_METRICS = ("mAP", "tail_mAP", "CF1", "OF1", "mA", "aux_mA", "pointing_game", "train_seconds",
                   "row_seconds", "row_cpu_seconds")


@dataclass(frozen=True)
class Claim:
    """A paper's claim as a paired comparison: `a` beats `b` on `metric` ("mAP", "mA" or "pointing")."""

    name: str
    paper: str
    task: str
    a: str
    b: str
    metric: str


CLAIMS: tuple[Claim, ...] = (
    Claim("Query2Label over a linear head, same loss (ASL)", "Query2Label", "objects", "query2label+ASL",
          "linear+ASL", "mAP"),
    Claim("AAM over ASL on ML-Decoder", "AAM (Prokofiev & Sovrasov)", "objects", "mldecoder+AAM", "mldecoder+ASL",
          "mAP"),
    Claim("AAM over ASL on GCN", "AAM (Prokofiev & Sovrasov)", "objects", "gcn+AAM", "gcn+ASL", "mAP"),
    Claim("Label2Label over a linear head, same loss (BCE)", "Label2Label", "attributes", "label2label+BCE",
          "linear+BCE", "mA"),
    Claim("Query2Label's served attention points better than the linear head's CAM", "Query2Label", "objects",
          "query2label+ASL", "linear+ASL", "pointing"),
)

_STATISTICS = {"mAP": ("mAP", "tail_mAP"), "mA": ("mA",), "pointing": ("pointing_game",)}


def tail_labels(train_positives: np.ndarray, share: float = TAIL_SHARE) -> np.ndarray:
    """Indices of the rarest `share` of the labels by training images (ties: the earlier label first)."""
    count = max(1, round(len(train_positives) * share))
    return np.sort(np.argsort(train_positives, kind="stable")[:count])


def _defined_mean(values: np.ndarray) -> float:
    """Mean over the labels with positives in this sample; NaN when none has (that draw is left out)."""
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")


def _metric(name: str, tail: np.ndarray) -> Callable[[RowPredictions, np.ndarray], np.ndarray]:
    """The statistics `decide` bootstraps for a claim on `name`, on a subset of image indices."""
    if name == "mAP":
        def both(p: RowPredictions, images: np.ndarray) -> np.ndarray:
            per_label = average_precision_columns(p.probs[images], p.targets[images])  # one sort for both means
            return np.array([_defined_mean(per_label), _defined_mean(per_label[tail])])
        return both
    if name == "mA":
        return lambda p, images: np.array([mean_accuracy(p.probs[images], p.targets[images])])
    if name == "pointing":
        def pointing(p: RowPredictions, images: np.ndarray) -> np.ndarray:
            if p.pointing_hits is None or p.pointing_pairs is None:
                raise ValueError("a pointing claim needs rows scored on data with boxes")
            return np.array([pointing_game(p.pointing_hits[images], p.pointing_pairs[images])])
        return pointing
    raise ValueError(f"unknown claim metric {name!r}; known: {sorted(_STATISTICS)}")


def decide(claim: Claim, a: list[RowPredictions], b: list[RowPredictions], replicates: int = 2000,
           seed: int = 0) -> dict[str, Any]:
    """The claim's paired differences (A - B, per statistic of its metric) over the seeds both rows ran."""
    for x, y in zip(a, b, strict=True):
        if not np.array_equal(x.targets, y.targets):
            raise ValueError(f"{claim.a} and {claim.b} were not scored on the same validation images")
    tail = tail_labels(a[0].train_positives)
    differences = paired_bootstrap(_metric(claim.metric, tail), a, b, len(a[0].targets), replicates, seed=seed)
    return {**asdict(claim), "seeds": len(a), "differences": {
        name: {**asdict(d), "verdict": d.verdict} for name, d in zip(_STATISTICS[claim.metric], differences,
                                                                      strict=True)}}


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (task, method), in first-seen order: mean, standard deviation (n - 1) and count over seeds of every
    metric of `SUMMARY_METRICS` the rows have."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["task"], row["method"]), []).append(row)
    summary = []
    for (task, method), group in groups.items():
        entry: dict[str, Any] = {"task": task, "method": method, "seeds": sorted(r["seed"] for r in group)}
        for name in SUMMARY_METRICS:
            values = [float(r[name]) for r in group if r.get(name) is not None]
            if values:
                entry[name] = {"mean": statistics.fmean(values),
                               "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}
        summary.append(entry)
    return summary

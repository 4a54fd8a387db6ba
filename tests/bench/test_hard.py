"""bench/hard.py's statistics and bench/hard_tables.py's tables, from small constructed runs (no training): the
claims' verdicts follow the saved predictions, and the README tables say what the JSON holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.claims import CLAIMS, summarize, tail_labels
from bench.hard import hard_rows, statistics_of
from bench.hard_tables import claims_table, rows_table
from bench.predictions import RowPredictions, load_predictions, save_predictions
from bench.readme_tables import load_tables

_LABELS = tuple(f"label{i}" for i in range(6))


def _run(tmp_path: Path, seeds: int = 3, images: int = 300) -> tuple[Path, dict[str, Any]]:
    """A run's JSON and npz files: Query2Label ranks every positive first and points right, the linear head scores
    at random and points right half the time; Label2Label and the linear attribute head predict the same."""
    rng = np.random.default_rng(0)
    targets = (rng.random((images, len(_LABELS))) < 0.3).astype(np.uint8)
    train_positives = np.array([90, 70, 50, 8, 5, 3])
    pairs = targets.sum(axis=1).astype(np.int32)
    out = tmp_path / "hard-test.json"
    rows = []
    for seed in range(seeds):
        attributes = rng.random(targets.shape)
        made = {
            ("objects", "query2label+ASL"): RowPredictions(_LABELS, targets + 0.01 * rng.random(targets.shape),
                                                           targets, train_positives, pointing_hits=pairs,
                                                           pointing_pairs=pairs),
            ("objects", "linear+ASL"): RowPredictions(_LABELS, rng.random(targets.shape), targets, train_positives,
                                                      pointing_hits=pairs // 2, pointing_pairs=pairs),
            ("attributes", "label2label+BCE"): RowPredictions(_LABELS, attributes, targets, train_positives),
            ("attributes", "linear+BCE"): RowPredictions(_LABELS, attributes, targets, train_positives),
        }
        for (task, method), predictions in made.items():
            path = save_predictions(out.with_suffix("") / f"{task}-{method}-seed{seed}.npz", predictions)
            rows.append({"task": task, "method": method, "seed": seed, "mAP": 0.5 + 0.01 * seed, "CF1": 0.4,
                         "mA": 0.6 if task == "attributes" else None, "train_seconds": 100.0 + seed,
                         "row_cpu_seconds": 190.0 + seed, "pointing_game": None,
                         "predictions": path.relative_to(tmp_path).as_posix()})
    document = {"benchmark": "hard", "created_at": "2026-12-03T00:00:00+00:00", "preset": "hard",
                "preset_config": {"objects": [1000, 800, 96], "attributes": [1000, 800, 96, 48],
                                  "backbone": "tf_efficientnet_lite0", "epochs": 6, "batch_size": 32,
                                  "backbone_overrides": ["model.feature_index=-2", "model.pretrained=true",
                                                         "model.backbone_kwargs={'output_stride': 8}"]},
                "seeds": list(range(seeds)), "device": "CPU (2 threads)", "rows": rows, "wall_seconds": 3600.0,
                "cpu_seconds": 9000.0}
    out.write_text(json.dumps(document), encoding="utf-8")
    return out, document


def test_claims_follow_the_saved_predictions(tmp_path: Path) -> None:
    out, document = _run(tmp_path)
    result = statistics_of(document, out, replicates=200)
    claims = {c["name"]: c for c in result["claims"]}
    q2l = claims["Query2Label over a linear head, same loss (ASL)"]["differences"]
    assert q2l["mAP"]["verdict"] == q2l["tail_mAP"]["verdict"] == "reproduces"
    pointing = claims["Query2Label's served attention points better than the linear head's CAM"]["differences"]
    assert pointing["pointing_game"]["mean"] > 0.4 and pointing["pointing_game"]["verdict"] == "reproduces"
    label2label = claims["Label2Label over a linear head, same loss (BCE)"]["differences"]["mA"]
    assert (label2label["mean"], label2label["low"], label2label["high"], label2label["verdict"]) == (
        0.0, 0.0, 0.0, "level")
    assert "AAM over ASL on GCN" not in claims  # rows it compares were not run
    assert result["data"]["objects"]["tail_labels"] == ["label4", "label5"]  # the rarest third of 6
    first = load_predictions(out.parent / result["rows"][0]["predictions"])
    assert result["rows"][0]["tail_mAP"] == pytest.approx(1.0, abs=1e-9)  # the perfect ranker, on the tail
    assert first.pointing_hits is not None and first.pointing_hits.sum() == first.pointing_pairs.sum()


def test_summary_is_mean_and_sample_std_over_seeds() -> None:
    rows = [{"task": "objects", "method": "m", "seed": s, "mAP": v, "pointing_game": None}
            for s, v in enumerate((0.6, 0.7, 0.8))]
    (entry,) = summarize(rows)
    assert entry["seeds"] == [0, 1, 2]
    assert entry["mAP"]["mean"] == pytest.approx(0.7) and entry["mAP"]["std"] == pytest.approx(0.1)
    assert "pointing_game" not in entry
    assert list(tail_labels(np.array([5, 1, 9, 1, 7, 3]))) == [1, 3]


def test_tables_render_what_the_json_holds(tmp_path: Path) -> None:
    out, document = _run(tmp_path)
    result = statistics_of(document, out, replicates=200)
    rows = rows_table([result])
    assert "| objects | query2label+ASL | 3 | 51.0 ± 1.0 | 100.0 ± 0.0 |" in rows
    assert "seeds 0, 1, 2" in rows
    assert "60 min wall, 9000 CPU seconds in all, training and statistics (75 min of 2 cores)" in rows
    assert "objects: 2 of 6 labels, 3-5 training images each (the most frequent label: 90)" in rows
    claims = claims_table([result])
    lines = [line for line in claims.splitlines() if line.startswith("| Query2Label over")]
    assert len(lines) == 2 and all(line.rstrip().endswith("| reproduces |") for line in lines)
    label2label = next(line for line in claims.splitlines() if line.startswith("| Label2Label"))
    assert "| +0.0 | [+0.0, +0.0] | +0.0 / +0.0 / +0.0 | level |" in label2label
    assert "200 bootstrap replicates" in claims


def test_the_hard_tables_are_registered_and_the_rows_are_the_claims_rows() -> None:
    tables = load_tables()
    assert {"hard-cpu-rows", "hard-cpu-claims", "hard-gpu-rows", "hard-gpu-claims"} <= set(tables)
    methods = {(row.task, row.name) for row in hard_rows(128)}
    for claim in CLAIMS:
        assert {(claim.task, claim.a), (claim.task, claim.b)} <= methods


def test_the_committed_run_is_what_its_saved_predictions_say() -> None:
    """bench/results/hard-cpu.json (README's hard tables): every row's mAP, tail mAP, mA and served pointing game is
    recomputed from its saved predictions, and every claim's point estimate from the rows."""
    from bench.claims import tail_labels as tail_of
    from bench.paired_bootstrap import mean_accuracy, mean_average_precision, pointing_game
    from bench.readme_tables import ROOT

    path = ROOT / "bench" / "results" / "hard-cpu.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    by_key = {}
    for row in document["rows"]:
        predictions = load_predictions(path.parent / row["predictions"])
        by_key[(row["task"], row["method"], row["seed"])] = row
        assert mean_average_precision(predictions.probs, predictions.targets) == pytest.approx(row["mAP"], abs=1e-9)
        tail = tail_of(predictions.train_positives)
        assert mean_average_precision(predictions.probs, predictions.targets, tail) == pytest.approx(
            row["tail_mAP"], abs=1e-9)
        if row["task"] == "attributes":
            assert mean_accuracy(predictions.probs, predictions.targets) == pytest.approx(row["mA"], abs=1e-9)
        else:
            assert pointing_game(predictions.pointing_hits, predictions.pointing_pairs) == pytest.approx(
                row["pointing_game"], abs=1e-12)
    assert {len(c["differences"]) for c in document["claims"]} <= {1, 2} and len(document["claims"]) == len(CLAIMS)
    for claim in document["claims"]:
        name = {"mAP": "mAP", "mA": "mA", "pointing": "pointing_game"}[claim["metric"]]
        differences = [by_key[(claim["task"], claim["a"], s)][name] - by_key[(claim["task"], claim["b"], s)][name]
                       for s in document["seeds"]]
        assert claim["differences"][name]["mean"] == pytest.approx(np.mean(differences), abs=1e-9)
        assert claim["differences"][name]["low"] <= claim["differences"][name]["high"]

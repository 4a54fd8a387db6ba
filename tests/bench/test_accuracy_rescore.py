"""bench.accuracy --rescore: a saved checkpoint exported again by the current code, its served pointing game
measured again, the rows not asked for left alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import accuracy
from bench.pointing import open_bundle, served_pointing_game


def test_rescore_measures_the_served_pointing_game_again(tiny_checkpoint: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accuracy, "CACHE", tmp_path / "cache")
    document = {"preset": "smoke", "rows": [
        {"task": "objects", "method": "query2label+ASL", "checkpoint": str(tiny_checkpoint), "pointing_game": 5.0},
        {"task": "objects", "method": "linear+BCE", "checkpoint": "/no/such/best.pt", "pointing_game": 0.25},
        {"task": "attributes", "method": "linear+BCE", "pointing_game": None},
    ]}
    rescored = accuracy.rescore_pointing(document, accuracy.PRESETS["smoke"], ["query2label+ASL"])
    q2l, linear, attributes = rescored["rows"]
    assert q2l["pointing_rescored"]["previous"] == 5.0 and q2l["pointing_rescored"]["commit"]
    repository = tmp_path / "cache" / "runs-smoke" / "objects-query2label-ASL" / "repository" / "model"
    val = tmp_path / "cache" / "objects-64-32-64" / "annotations" / "instances_val.json"
    assert q2l["pointing_game"] == served_pointing_game(open_bundle(repository), val)["pointing_game"]
    assert 0.0 <= q2l["pointing_game"] <= 1.0
    assert linear == {"task": "objects", "method": "linear+BCE", "checkpoint": "/no/such/best.pt",
                      "pointing_game": 0.25}  # not asked for: not touched (its checkpoint does not even exist)
    assert "pointing_rescored" not in attributes

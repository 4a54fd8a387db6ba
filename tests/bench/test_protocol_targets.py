"""bench.protocols judges issue 22's targets from the rows it measured, and bench.request_timeline turns spans into
one request's phases; both on rows and spans written out here, so every comparison is checked both ways."""

from __future__ import annotations

from typing import Any

import pytest

from bench.protocols import changes, targets
from bench.request_timeline import PHASES, timeline


def _row(server: str, protocol: str, client: str, concurrency: int, images_per_s: float, p50_ms: float,
         model: str = "light-q2l") -> dict[str, Any]:
    return {"model": model, "server": server, "protocol": protocol, "client": client, "concurrency": concurrency,
            "images_per_s": images_per_s, "p50_ms": p50_ms}


def test_targets_compare_with_the_pipeline_for_the_own_client_and_the_baseline_for_each() -> None:
    rows = [_row("baseline", "predict", "own", 32, 300.0, 100.0), _row("baseline", "predict", "own", 1, 200.0, 4.0),
            _row("labelserve", "grpc", "own", 32, 420.0, 60.0), _row("labelserve", "grpc", "own", 1, 190.0, 4.5)]
    found = {target["target"]: target for target in targets("light-q2l", rows, {"16": {"images_per_s": 500.0}})}
    assert found["grpc c=32 / pipeline batch 16"]["value"] == pytest.approx(0.84)
    assert found["grpc c=32 / pipeline batch 16"]["met"] is False  # 0.84 < 0.85
    assert found["grpc c=32 / baseline c=32"]["value"] == pytest.approx(1.4)
    assert found["grpc c=32 / baseline c=32"]["met"] is True
    assert found["grpc c=1 p50 - baseline c=1 p50 (ms)"]["value"] == pytest.approx(0.5)
    assert found["grpc c=1 p50 - baseline c=1 p50 (ms)"]["met"] is False  # slower alone than the baseline
    plain = targets("light-q2l", [_row("labelserve", "predict", "plain", 32, 400.0, 80.0)],
                    {"16": {"images_per_s": 500.0}})
    assert plain[0]["met"] is None and plain[0]["goal"] == "(shown)"  # the plain client's pipeline ratio is shown


def test_changes_pair_each_before_cell_with_the_same_cell_now() -> None:
    rows = [_row("labelserve@abc", "predict", "own", 32, 400.0, 60.0, "demo"),
            _row("labelserve", "predict", "own", 32, 440.0, 55.0, "demo"),
            _row("labelserve", "grpc", "own", 32, 380.0, 70.0, "demo")]  # no before: not compared
    (change,) = changes(rows)
    assert change["against"] == "labelserve@abc" and change["img/s ratio"] == pytest.approx(1.1)
    assert change["p50 diff ms"] == pytest.approx(-5.0)


def _span(name: str, trace: int, start_us: int, end_us: int, links: tuple[int, ...] = ()) -> dict[str, Any]:
    return {"name": name, "trace": trace, "links": list(links), "start": start_us * 1000, "end": end_us * 1000}


def test_the_timeline_names_every_gap_and_skips_incomplete_requests() -> None:
    spans = [_span("POST /predict", 1, 0, 1000), _span("body read", 1, 10, 20), _span("admission wait", 1, 30, 31),
             _span("decode", 1, 100, 400), _span("queue wait", 1, 410, 420),
             _span("engine batch", 99, 450, 850, links=(1,)), _span("encode", 1, 900, 910),
             _span("POST /predict", 2, 2000, 2500), _span("decode", 2, 2100, 2200)]  # 2 has no engine batch
    phases = timeline(spans)
    assert phases["decode"] == [300.0] and phases["engine batch"] == [400.0]
    assert phases["routing, multipart, lease, hand-off to a decode thread"] == [69.0]
    assert phases["back from the engine thread, postprocess, store commit"] == [50.0]
    assert phases["response: metrics, access log, write"] == [90.0]
    named = sum(values[0] for phase, values in phases.items() if phase != "server (the request's span)")
    assert named == pytest.approx(phases["server (the request's span)"][0]) == 1000.0
    assert all(len(phases[phase]) == 1 for phase in PHASES)

"""bench/merge_results.py joins a benchmark run made in slices into the one document README tables read."""

from __future__ import annotations

import pytest

from bench.merge_results import merge_documents


def _part(created: str, *rows: tuple[str, str, float]) -> dict:
    return {"benchmark": "accuracy-x", "created_at": created, "preset": "x", "wall_seconds": 100.0,
            "rows": [{"task": t, "method": m, "row_seconds": s} for t, m, s in rows]}


def test_rows_are_joined_in_table_order_and_timed_serially() -> None:
    first = _part("2026-12-01T01:00", ("objects", "gcn+AAM", 30.0))
    second = _part("2026-12-01T01:05", ("objects", "linear+BCE", 10.0), ("attributes", "linear+BCE", 5.0))
    merged = merge_documents([first, second], ["a.json", "b.json"],
                             ["objects/linear+BCE", "objects/gcn+AAM", "attributes/linear+BCE"])
    assert [(r["task"], r["method"]) for r in merged["rows"]] == [
        ("objects", "linear+BCE"), ("objects", "gcn+AAM"), ("attributes", "linear+BCE")]
    assert merged["wall_seconds"] == 45.0
    assert merged["created_at"] == "2026-12-01T01:00" and [p["file"] for p in merged["parts"]] == ["a.json", "b.json"]


def test_parts_of_different_benchmarks_are_refused() -> None:
    other = {**_part("t"), "benchmark": "engine"}
    with pytest.raises(ValueError, match="different benchmarks"):
        merge_documents([_part("t"), other], ["a", "b"])

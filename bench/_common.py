"""Shared bits of the benchmarks: timing statistics, a plain-text table, JSON results with the machine described."""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labelserve_tools.loadgen import percentiles_ms

__all__ = ["format_table", "machine", "percentiles_ms", "write_results"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Rows as an aligned plain-text table (floats with 2 decimals)."""

    def cell(value: Any) -> str:
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    widths = [max(len(c), *(len(cell(r.get(c, ""))) for r in rows)) for c in columns]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(cell(r.get(c, "")).rjust(w) for c, w in zip(columns, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version()}


def write_results(name: str, payload: dict[str, Any], out: Path | None = None) -> Path:
    """Write `payload` plus machine info and a timestamp as JSON; default `bench/results/<name>-<time>.json`."""
    path = out or RESULTS_DIR / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"benchmark": name, "created_at": datetime.now(UTC).isoformat(), "machine": machine(), **payload}
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path

"""The GPU session's record, `$OUT/gpu-session.json`: the machine, each step's outcome (ran, failed, timed out or
skipped, and why) and the figures the session is for, read from the steps' own JSON. bench/gpu_session.sh rewrites it
after every step, so a call cut short still says what it measured.

    python -m bench.gpu_summary environment OUT
    python -m bench.gpu_summary record OUT STEP STATUS SECONDS [DETAIL] [--attach FILE]
    python -m bench.gpu_summary show OUT
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench._common import format_table

__all__ = ["SERVICE_GOAL", "SESSION_FILE", "figures", "record"]

SESSION_FILE = "gpu-session.json"
SERVICE_GOAL = 0.5  # the service (JPEG in, JSON out) over the engine alone on ready tensors, at the top concurrency


def _load(out: Path) -> dict[str, Any]:
    path = out / SESSION_FILE
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    return {"benchmark": "gpu-session", "created_at": datetime.now(UTC).isoformat(),
            "dry_run": os.environ.get("GPU_SESSION_DRY_RUN") == "1", "steps": []}


def _save(out: Path, document: dict[str, Any]) -> None:
    document["figures"] = figures(out)
    path = out / SESSION_FILE
    path.with_suffix(".tmp").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    path.with_suffix(".tmp").replace(path)


def _torch() -> str:
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none visible"
    return f"{torch.__version__}, CUDA device: {device}"


def _onnxruntime() -> str:
    import onnxruntime

    return f"{onnxruntime.__version__}, providers: {onnxruntime.get_available_providers()}"


def _facts(describe: Callable[[], str]) -> str:
    try:
        return describe()
    except Exception as exc:  # what is missing or broken is the finding
        return f"not usable: {type(exc).__name__}: {exc}"


def environment(out: Path) -> dict[str, Any]:
    """What the figures were measured on; the GPU part says why it is missing on a machine without one."""
    facts: dict[str, Any] = {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                             "platform": platform.platform()}
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
        facts["gpu"] = subprocess.run(query, capture_output=True, text=True, check=False).stdout.strip()
    else:
        facts["gpu"] = "skipped: nvidia-smi is not on this machine (no NVIDIA GPU; a CPU rehearsal)"
    facts["torch"] = _facts(_torch)
    facts["onnxruntime"] = _facts(_onnxruntime)
    document = _load(out)
    document["environment"] = facts
    _save(out, document)
    return facts


def _junit(path: Path) -> dict[str, Any]:
    """pytest's JUnit XML as counts, the failures' names and the distinct skip reasons."""
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    cases = list(suite.iter("testcase")) if suite is not None else []
    failed = [f"{c.get('classname')}.{c.get('name')}" for c in cases
              if c.find("failure") is not None or c.find("error") is not None]
    skipped = sorted({s.get("message", "") for c in cases for s in c.findall("skipped")})
    return {"tests": len(cases), "failed": failed, "skipped": sum(c.find("skipped") is not None for c in cases),
            "passed": len(cases) - len(failed) - sum(c.find("skipped") is not None for c in cases),
            "skip_reasons": skipped}


def record(out: Path, step: str, status: str, seconds: int, detail: str = "", attach: Path | None = None) -> None:
    """Add (or replace) one step's outcome; `attach`: its JUnit XML (counted) or JSON, kept in the record."""
    document = _load(out)
    item: dict[str, Any] = {"step": step, "status": status, "seconds": seconds, "detail": detail}
    if attach is not None and attach.is_file():
        item["result"] = _junit(attach) if attach.suffix == ".xml" else json.loads(attach.read_text("utf-8"))
        if attach.suffix == ".xml" and not detail:
            item["detail"] = "{passed} passed, {skipped} skipped, {failed} failed".format(
                **{**item["result"], "failed": len(item["result"]["failed"])})
    document["steps"] = [s for s in document["steps"] if s["step"] != step] + [item]
    _save(out, document)


def _top(levels: list[dict[str, Any]]) -> dict[str, Any]:
    return max(levels, key=lambda level: level["concurrency"])


def _serving(path: Path) -> dict[str, Any]:
    """One serving JSON as the session's figures: service over engine (the goal), batching on over off."""
    document = json.loads(path.read_text(encoding="utf-8"))
    batch = document["in_process"][str(document["batch"])]
    ours = _top(document["medians"]["labelserve"])
    facts = {"engine": document["engine"], "jpeg_decode": document["jpeg_decode"], "batch": document["batch"],
             "concurrency": ours["concurrency"], "engine_only_images_per_s": batch["engine_images_per_s"],
             "pipeline_images_per_s": batch["pipeline_images_per_s"], "service_images_per_s": ours["images_per_s"]}
    ratio = ours["images_per_s"] / batch["engine_images_per_s"]
    facts["service_over_engine"] = {"value": ratio, "goal": f">= {SERVICE_GOAL}", "met": ratio >= SERVICE_GOAL}
    if unbatched := document["medians"].get("labelserve-unbatched"):
        facts["unbatched_images_per_s"] = _top(unbatched)["images_per_s"]
        facts["batching_on_over_off"] = ours["images_per_s"] / facts["unbatched_images_per_s"]
    return facts


def figures(out: Path) -> dict[str, Any]:
    """The session's figures from the step files present under `out`."""
    found: dict[str, Any] = {}
    for decode in ("pillow", "nvjpeg"):
        for path in sorted((out / decode).glob("serving-*.json")):
            found.setdefault(decode, {})[path.stem.removeprefix("serving-")] = _serving(path)
    for model, facts in found.get("nvjpeg", {}).items():
        if pillow := found.get("pillow", {}).get(model):
            facts["service_over_pillow"] = facts["service_images_per_s"] / pillow["service_images_per_s"]
            facts["pipeline_over_pillow"] = facts["pipeline_images_per_s"] / pillow["pipeline_images_per_s"]
    if (out / "workers.json").is_file():
        rows = json.loads((out / "workers.json").read_text(encoding="utf-8"))["rows"]
        found["workers"] = [{k: row[k] for k in ("workers", "concurrency", "images_per_s", "speedup")} for row in rows]
    return found


def show(out: Path) -> str:
    """The summary: what ran, failed, timed out or skipped and why, then the figures."""
    document = _load(out)
    rows = [{"step": s["step"], "status": s["status"], "s": s["seconds"], "why / what": s["detail"]}
            for s in document["steps"]]
    lines = [f"GPU session{' (CPU rehearsal)' if document['dry_run'] else ''}: {len(rows)} steps", "",
             format_table(rows, ["step", "status", "s", "why / what"])]
    for decode in ("pillow", "nvjpeg"):
        table = [{"model": m, "engine img/s": f["engine_only_images_per_s"], "service img/s": f["service_images_per_s"],
                  "service/engine": f["service_over_engine"]["value"], "goal met": f["service_over_engine"]["met"],
                  "batching on/off": f.get("batching_on_over_off", ""), "over pillow": f.get("service_over_pillow", "")}
                 for m, f in document.get("figures", {}).get(decode, {}).items()]
        if table:
            lines += ["", f"JPEG decode {decode}:", format_table(table, list(table[0]))]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("environment").add_argument("out", type=Path)
    commands.add_parser("show").add_argument("out", type=Path)
    step = commands.add_parser("record")
    for name in ("out", "step", "status", "seconds"):
        step.add_argument(name, type={"out": Path, "seconds": int}.get(name, str))
    step.add_argument("detail", nargs="?", default="")
    step.add_argument("--attach", type=Path)
    args = parser.parse_args()
    if args.command == "environment":
        for key, value in environment(args.out).items():
            print(f"{key}: {value}")
    elif args.command == "record":
        record(args.out, args.step, args.status, args.seconds, args.detail, args.attach)
    else:
        print(show(args.out))


if __name__ == "__main__":
    main()

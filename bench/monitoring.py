"""What watching every label costs and how fast it sees a drift, on real servers.

    python -m bench.monitoring                    # all three parts
    python -m bench.monitoring --parts cost --seconds 5 --rounds 1 --out /tmp/monitoring.json

  delay   the demo model (`labelserve demo`, its bundle with a baseline), monitor windows of 2,000 (the default)
          and 500 answers, flags from 200: 1,000 fresh scenes of the same generator (another seed: not the
          validation images) must flag nothing; then a shifted stream (yellow hidden by a colour cast; or one class
          left out) is sent 25 images at a time until its label is flagged: N images, and every other label's
          largest drift meanwhile.
  cost    closed-loop throughput at 32 clients with LABELSERVE_MONITOR_LABELS on and off, alternated rounds, on both
          bench models (the demo, decode-bound; Query2Label-ResNet-18 with 80 labels, engine-bound); plus what one
          batch of a 1,000-label model costs the engine thread and how many series its gauges export.
  shadow  the demo with a second version shadowing 100 % of its images, against no shadow: the primary's p50/p99
          and throughput at 8 clients, and how many copies were made or dropped.

Targets (issue 20): cost >= 0.97x on every bench model. Prints a table per part and writes JSON
(bench/results/monitoring-*.json).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from bench._common import format_table, percentiles_ms, write_results
from bench.images import jpeg_payloads, labelled_scenes, photo_payloads
from bench.models import DEFAULT_REPOSITORY, ENGINE_BOUND_MODEL, ensure_model
from bench.repositories import copy_version, write_model_config
from labelserve.bundle import list_versions, load_bundle
from labelserve_tools.loadgen import closed_loop, multipart_request, run_level
from labelserve_tools.local_server import start_server

CHUNK = 25
LEFT_OUT = "red_circle"


def _hide_yellow(data: bytes) -> bytes:
    """The same colour cast as tests/e2e/test_label_monitoring_e2e.py: yellow pixels turned grey."""
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int16)
    yellow = (pixels[..., 0] > 150) & (pixels[..., 1] > 150) & (pixels[..., 2] < 110)
    pixels[yellow] = (pixels.sum(axis=2) // 3)[yellow][:, None]
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(out, format="JPEG", quality=95)
    return out.getvalue()


def _stats(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/v2/models/demo/stats", timeout=30).json()["model_stats"][-1]["label_stats"]


def _send(url: str, images: list[bytes]) -> None:
    files = [("files", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(images)]
    response = httpx.post(f"{url}/predict", files=files, timeout=120)
    response.raise_for_status()


def _delay_run(repository: Path, normal: list[bytes], shifted: list[bytes], label: str,
               window: int) -> dict[str, Any]:
    """Normal traffic, then the shift: images until `label` is flagged, and what else was flagged on the way."""
    with tempfile.TemporaryDirectory() as logs, start_server(repository, Path(logs), repository_poll_s="0",
                                                             monitor_window_images=str(window)) as server:
        normal_flags: set[str] = set()
        for start in range(0, len(normal), CHUNK):
            _send(server.url, normal[start:start + CHUNK])
            normal_flags.update(_stats(server.url)["flagged"])
        before = _stats(server.url)
        delay, others, other_flags = None, 0.0, set()
        for start in range(0, len(shifted), CHUNK):
            _send(server.url, shifted[start:start + CHUNK])
            stats = _stats(server.url)
            other_flags.update(set(stats["flagged"]) - {label})
            others = max([others, *(h["drift"] or 0.0 for h in stats["labels"] if h["name"] != label)])
            if label in stats["flagged"]:
                delay = start + CHUNK
                break
        server.stop()
    return {"label": label, "window": window, "normal_images": len(normal), "flagged_on_normal": sorted(normal_flags),
            "normal_status": before["status"], "normal_max_drift": max(h["drift"] or 0.0 for h in before["labels"]),
            "images_until_flagged": delay, "other_labels_max_drift": others,
            "other_labels_flagged": sorted(other_flags)}


def measure_delay(repository: Path, normal_count: int = 1000, windows: tuple[int, ...] = (2000, 500)) -> list[dict]:
    """Both shifts after `normal_count` fresh scenes, for each window size."""
    bundle = load_bundle(repository / "demo" / str(list_versions(repository / "demo")[-1]))
    if bundle.manifest.baseline is None:
        raise SystemExit(f"{bundle.path} has no baseline: re-export it (`labelserve export <best.pt> ...`) with this "
                         "release, which writes one")
    with tempfile.TemporaryDirectory() as tmp:
        scenes = labelled_scenes(Path(tmp), normal_count + 2800, seed=1)
    normal = [data for data, _ in scenes[:normal_count]]
    later = scenes[normal_count:]
    shifts = {"colour cast hiding yellow": ("yellow_star", [_hide_yellow(data) for data, _ in later]),
              f"{LEFT_OUT} left out": (LEFT_OUT, [data for data, labels in later if LEFT_OUT not in labels])}
    runs = []
    for window in windows:
        for shift, (label, shifted) in shifts.items():
            runs.append({"shift": shift, **_delay_run(repository, normal, shifted, label, window)})
    return runs


def _throughput(repository: Path, model: str, payloads: list[bytes], seconds: float, **settings: str) -> dict:
    with tempfile.TemporaryDirectory() as logs, start_server(repository, Path(logs), repository_poll_s="0",
                                                             **settings) as server:
        result = run_level(server.url, 32, seconds, payloads, model, server_pid=server.process.pid)
        server.stop()
    return result


def measure_cost(bench_repository: Path, seconds: float, rounds: int, models: list[str],
                 engine: str = "onnxruntime") -> list[dict[str, Any]]:
    """Throughput at 32 clients, monitoring on and off, alternated, per bench model."""
    rows = []
    for model in models:
        payloads = photo_payloads(32) if model == ENGINE_BOUND_MODEL else jpeg_payloads(32, 256)
        with tempfile.TemporaryDirectory() as tmp:
            repository = Path(tmp)
            (repository / model).symlink_to((bench_repository / model).resolve(), target_is_directory=True)
            runs: dict[str, list[dict[str, Any]]] = {"true": [], "false": []}
            for round_index in range(rounds):
                for monitor in (("true", "false") if round_index % 2 == 0 else ("false", "true")):
                    runs[monitor].append(_throughput(repository, model, payloads, seconds, monitor_labels=monitor,
                                                     engine=engine))
        on = [r["images_per_s"] for r in runs["true"]]
        off = [r["images_per_s"] for r in runs["false"]]
        cpu_on = statistics.median(r["server_cpu_s_per_image"] for r in runs["true"]) * 1000
        cpu_off = statistics.median(r["server_cpu_s_per_image"] for r in runs["false"]) * 1000
        rows.append({"model": model, "engine": engine, "on_images_per_s": statistics.median(on),
                     "off_images_per_s": statistics.median(off), "on": on, "off": off,
                     "ratio": statistics.median(on) / statistics.median(off),
                     "cpu_ms_per_image_on": cpu_on, "cpu_ms_per_image_off": cpu_off})
    return rows


def measure_large_model(labels: int = 1000, batch: int = 16, repeats: int = 200) -> dict[str, Any]:
    """A 1,000-label model (ML-Decoder's regime): engine-thread time per batch, memory, and exported series."""
    from labelserve.label_stats import Baseline
    from service.label_metrics import LabelGauges
    from service.label_monitor import LabelMonitor, MonitorSettings
    from service.observability import Metrics

    rng = np.random.default_rng(0)
    names = [f"label_{i:04d}" for i in range(labels)]
    baseline = Baseline.from_logits(rng.normal(-4, 2, (2000, labels)), [0.5] * labels, "synthetic")
    monitor = LabelMonitor("large", 1, names, [0.5] * labels, baseline, MonitorSettings())
    logits = rng.normal(-4, 2, (batch, labels)).astype(np.float32)
    started = time.perf_counter()
    for _ in range(repeats):
        monitor.observe(logits)
    per_batch = (time.perf_counter() - started) / repeats
    started = time.perf_counter()
    report = monitor.report()
    report_s = time.perf_counter() - started
    metrics = Metrics()
    LabelGauges(metrics, cap=100).refresh([report], [])
    samples = [sample for family in metrics.registry.collect() for sample in family.samples
               if sample.name.startswith("labelserve_label") and "label" in sample.labels]
    return {"labels": labels, "batch": batch, "observe_ms_per_batch": per_batch * 1000,
            "report_ms": report_s * 1000, "window_bytes": 10 * labels * (16 + 1) * 8,
            "labels_exported": len({sample.labels["label"] for sample in samples}), "per_label_series": len(samples)}


async def _clients(url: str, requests: list[bytes], seconds: float) -> tuple[list[float], Counter]:
    latencies: list[float] = []
    statuses: Counter = Counter()
    await closed_loop(url, requests, 8, seconds, latencies, statuses)
    return latencies, statuses


def measure_shadow(bench_repository: Path, seconds: float, rounds: int) -> dict[str, Any]:
    """The primary at 8 clients with a 100 % shadow of the same model and without."""
    payloads = jpeg_payloads(32, 256)
    source = bench_repository / "demo"
    version = list_versions(source)[-1]
    results: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        repository = Path(tmp) / "repository"
        for copy in (1, 2):
            copy_version(source / str(version), repository, copy, name="demo")
        for round_index in range(rounds):
            for mode in (("off", "on") if round_index % 2 == 0 else ("on", "off")):
                config: dict[str, Any] = {"version_policy": {"latest": 2}, "default_version": 1}
                if mode == "on":
                    config["shadow"] = {"version": 2, "share": 1.0}
                write_model_config(repository, config, name="demo")
                with start_server(repository, Path(tmp), repository_poll_s="0") as server:
                    requests = [multipart_request(server.url, "/predict", f"{i}.jpg", p)
                                for i, p in enumerate(payloads)]
                    asyncio.run(_clients(server.url, requests, 2.0))  # warm-up
                    latencies, statuses = asyncio.run(_clients(server.url, requests, seconds))
                    entry = httpx.get(f"{server.url}/v2/models/demo/versions/1/stats", timeout=30).json()
                    shadow = entry["model_stats"][0]["shadow"] or {}
                    server.stop()
                results[mode].append({"images_per_s": statuses.get(200, 0) / seconds,
                                      "latency": percentiles_ms(latencies),
                                      "mirrored": shadow.get("mirrored_total", 0),
                                      "dropped": shadow.get("dropped_total", 0)})
    summary = {}
    for mode, runs in results.items():
        summary[mode] = {"images_per_s": statistics.median(r["images_per_s"] for r in runs),
                         "p50_ms": statistics.median(r["latency"]["p50_ms"] for r in runs),
                         "p99_ms": statistics.median(r["latency"]["p99_ms"] for r in runs),
                         "mirrored": sum(r["mirrored"] for r in runs), "dropped": sum(r["dropped"] for r in runs)}
    return {"runs": results, "summary": summary,
            "p99_ratio": summary["on"]["p99_ms"] / summary["off"]["p99_ms"],
            "throughput_ratio": summary["on"]["images_per_s"] / summary["off"]["images_per_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--parts", nargs="+", choices=["delay", "cost", "shadow"], default=["delay", "cost", "shadow"])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per throughput figure")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds (medians)")
    parser.add_argument("--models", nargs="+", default=["demo", ENGINE_BOUND_MODEL],
                        help="bench models of the cost part (the other parts use the demo)")
    parser.add_argument("--engine", choices=["onnxruntime", "tensorrt", "torch"], default="onnxruntime",
                        help="the servers' engine in the cost part (torch: on a GPU session)")
    parser.add_argument("--out", type=Path, help="JSON path (default: bench/results/monitoring-<time>.json)")
    args = parser.parse_args()

    result: dict[str, Any] = {"seconds": args.seconds, "rounds": args.rounds}
    for model in {"demo", *args.models}:
        ensure_model(args.repository, model)
    if "delay" in args.parts:
        result["delay"] = measure_delay(args.repository)
        print(format_table(result["delay"], ["shift", "label", "window", "normal_status", "normal_max_drift",
                                             "images_until_flagged", "other_labels_max_drift",
                                             "other_labels_flagged"]), flush=True)
    if "cost" in args.parts:
        result["cost"] = measure_cost(args.repository, args.seconds, args.rounds, args.models, args.engine)
        result["large_model"] = measure_large_model()
        print(format_table(result["cost"], ["model", "on_images_per_s", "off_images_per_s", "ratio",
                                            "cpu_ms_per_image_on", "cpu_ms_per_image_off"]), flush=True)
        print(result["large_model"], flush=True)
    if "shadow" in args.parts:
        result["shadow"] = measure_shadow(args.repository, args.seconds, args.rounds)
        print(json.dumps(result["shadow"]["summary"], indent=1), flush=True)
    path = write_results("monitoring", result, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

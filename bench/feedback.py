"""Thresholds that learn, measured: the F1 a recalibration wins back on a shifted stream, and what keeping answers
and taking feedback costs a server at full speed.

    python -m bench.feedback                      # both parts on the demo model
    python -m bench.feedback --parts cost --seconds 5 --rounds 1 --out /tmp/feedback.json

  gain    the demo model served on scenes of its generator (another seed: not its validation images) as a worse
          camera sees them, where its validation thresholds are wrong: sensor noise (20 grey levels), and low light
          (70 % brightness, noise of 15). 500 answers get feedback with their true labels, `labelserve calibrate`
          (policy f1) writes a new version, the server loads it, and the next 500 scenes are answered by both
          versions: micro F1 and each label's F1 before and after.
  cost    closed-loop throughput at 32 clients: answers kept for feedback (LABELSERVE_RETAIN_PREDICTIONS) or not; and
          with 32 more clients sending feedback on recent answers, one a second each (people reviewing answers),
          against none. Medians of alternated rounds.

Target (issue 21): feedback from 32 clients costs < 5 % of the throughput. Prints tables, writes JSON
(bench/results/feedback-*.json).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image, ImageEnhance

from bench._common import format_table, percentiles_ms, write_results
from bench.images import jpeg_payloads, labelled_scenes
from bench.models import DEFAULT_REPOSITORY, ensure_model
from bench.repositories import copy_version, write_model_config
from labelserve.bundle import list_versions
from labelserve.client import Client
from labelserve_tools.loadgen import Connection, closed_loop, multipart_request, process_tree_cpu_s
from labelserve_tools.local_server import ServerProcess, start_server

SCENES = 500  # answers given feedback, then answers measured


def _camera(brightness: float, noise: float) -> Callable[[bytes, int], bytes]:
    def see(data: bytes, seed: int) -> bytes:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        pixels = np.asarray(ImageEnhance.Brightness(image).enhance(brightness)).astype(np.float32)
        pixels += np.random.default_rng(seed).normal(0.0, noise, pixels.shape)
        out = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, format="JPEG", quality=95)
        return out.getvalue()

    return see


SHIFTS = {"sensor noise (20 grey levels)": _camera(1.0, 20.0), "low light (70 %, noise 15)": _camera(0.7, 15.0)}


def _answers(client: Client, images: list[bytes], version: int | None = None) -> list[Any]:
    results = []
    for start in range(0, len(images), 25):
        results += client.predict(images[start:start + 25], version=version).results
    return results


def _f1(results: list[Any], truths: list[set[str]], labels: tuple[str, ...]) -> tuple[float, dict[str, float]]:
    counts = {label: [0, 0, 0] for label in labels}
    for result, truth in zip(results, truths, strict=True):
        predicted = set(result.predicted)
        for label in labels:
            said, present = label in predicted, label in truth
            counts[label][0 if said and present else 1 if said else 2] += said or present
    tp, fp, fn = (sum(c[i] for c in counts.values()) for i in range(3))
    per_label = {label: 2 * c[0] / (2 * c[0] + c[1] + c[2]) if sum(c) else float("nan")
                 for label, c in counts.items()}
    return 2 * tp / (2 * tp + fp + fn), per_label


def measure_gain(bench_repository: Path, scenes: list[tuple[bytes, set[str]]]) -> list[dict[str, Any]]:
    """Per shift: micro and per-label F1 on the next 500 scenes, validation thresholds against recalibrated."""
    source = bench_repository / "demo" / str(list_versions(bench_repository / "demo")[-1])
    rows = []
    for shift, see in SHIFTS.items():
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "models"
            copy_version(source, root, 1, name="demo")
            write_model_config(root, {"version_policy": {"latest": 2}}, name="demo")  # both, to compare them
            url = f"sqlite:///{Path(tmp) / 'feedback.sqlite3'}"
            images = [see(data, index) for index, (data, _) in enumerate(scenes)]
            truths = [truth for _, truth in scenes]
            with start_server(root, Path(tmp), store_url=url, repository_poll_s="0.5") as server, \
                    Client(server.url) as client:
                labels = tuple(client.models().models[0].labels)
                started = time.monotonic()
                for answer, truth in zip(_answers(client, images[:SCENES]), truths[:SCENES], strict=True):
                    client.feedback("demo", answer.id, labels=sorted(truth))
                feedback_s = time.monotonic() - started
                calibrate = subprocess.run([sys.executable, "-m", "labelserve_tools.cli", "calibrate", "demo",
                                            "--repository", str(root), "--store", url], capture_output=True,
                                           text=True, timeout=300, check=True)
                _wait_for_version(server, 2)
                before, before_labels = _f1(_answers(client, images[SCENES:], version=1), truths[SCENES:], labels)
                after, after_labels = _f1(_answers(client, images[SCENES:], version=2), truths[SCENES:], labels)
                report = httpx.get(f"{server.url}/models/demo/versions/2/calibration", timeout=30).json()
                server.stop()
        rows.append({"shift": shift, "feedback": SCENES, "measured": len(scenes) - SCENES,
                     "micro_f1_before": before, "micro_f1_after": after, "labels_changed": sum(
                         1 for label in report["labels"] if label["new_threshold"] != label["old_threshold"]),
                     "per_label_f1_before": before_labels, "per_label_f1_after": after_labels,
                     "labels_better": sum(after_labels[k] > before_labels[k] + 1e-9 for k in labels),
                     "labels_worse": sum(after_labels[k] < before_labels[k] - 1e-9 for k in labels),
                     "feedback_seconds": feedback_s, "calibrate_report_tail": calibrate.stdout.splitlines()[-1]})
    return rows


def _wait_for_version(server: ServerProcess, version: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if version in [m["version"] for m in httpx.get(f"{server.url}/models", timeout=10).json()["models"]]:
            return
        time.sleep(0.3)
    raise RuntimeError(f"version {version} was not loaded within {timeout_s} s")


async def _review(url: str, payload: bytes, seconds: float, reviewers: int) -> dict[str, Any]:
    """`reviewers` people, each sending a feedback a second on a recent answer (answers fetched every 0.2 s)."""
    ids: list[str] = []
    latencies: list[float] = []
    refused: Counter = Counter()
    stop = time.monotonic() + seconds

    host = url.removeprefix("http://")

    async def review(index: int) -> None:
        # the raw keep-alive client the predicting clients use: on 2 shared cores, a heavier client's CPU would be
        # counted against the server
        rng = random.Random(index)
        connection = Connection(url)
        try:
            while time.monotonic() < stop:
                await asyncio.sleep(rng.uniform(0.5, 1.5))
                if ids:
                    body = json.dumps({"id": rng.choice(ids[-500:]), "labels": []}).encode()
                    request = (f"POST /v2/models/demo/feedback HTTP/1.1\r\nHost: {host}\r\nContent-Type: "
                               f"application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
                    started = time.monotonic()
                    response = await connection.send(request)
                    if response.status == 200:
                        latencies.append(time.monotonic() - started)
                    else:
                        refused[response.status] += 1
        finally:
            await connection.close()

    async def collect_ids() -> None:
        connection = Connection(url)
        request = multipart_request(url, "/predict", "x.jpg", payload)
        try:
            while time.monotonic() < stop:
                response = await connection.send(request)
                if response.status == 200:
                    ids.append(json.loads(response.body)["results"][0]["id"])
                await asyncio.sleep(0.2)
        finally:
            await connection.close()

    await asyncio.gather(collect_ids(), *(review(i) for i in range(reviewers)))
    return {"feedback": len(latencies), "feedback_latency": percentiles_ms(latencies),
            "refused": {str(k): v for k, v in refused.items()}}


def _reviewers_process(url: str, payload: bytes, seconds: float, reviewers: int, pipe: Any) -> None:
    """Process entry: the reviewers on an event loop of their own, so their client work never slows the loop of the
    clients that measure the server."""
    pipe.send(asyncio.run(_review(url, payload, seconds, reviewers)))
    pipe.close()


def _load(url: str, requests: list[bytes], payload: bytes, seconds: float, reviewers: int,
          server_pid: int | None = None) -> dict[str, Any]:
    """32 predicting clients for `seconds`; with `reviewers` people sending feedback meanwhile, from another
    process. Returns throughput, latency, and the feedback sent."""
    review: dict[str, Any] = {"feedback": 0, "feedback_latency": percentiles_ms([]), "refused": {}}
    process = None
    if reviewers:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(target=_reviewers_process, args=(url, payload, seconds, reviewers, theirs))
        process.start()
    latencies: list[float] = []
    statuses: Counter = Counter()
    cpu_before = process_tree_cpu_s(server_pid) if server_pid else 0.0
    elapsed = asyncio.run(closed_loop(url, requests, 32, seconds, latencies, statuses))
    server_cpu_s = process_tree_cpu_s(server_pid) - cpu_before if server_pid else float("nan")
    if process is not None:
        review = ours.recv() if ours.poll(seconds + 60) else review
        process.join(30)
    answered = statuses.get(200, 0)
    return {"images_per_s": answered / elapsed, "latency": percentiles_ms(latencies),
            "answers": {str(k): v for k, v in statuses.items()},
            "server_cpu_ms_per_image": 1000.0 * server_cpu_s / answered if answered else float("nan"), **review}


def measure_cost(bench_repository: Path, seconds: float, rounds: int) -> dict[str, Any]:
    """Throughput at 32 clients: retention off / on / on with 32 reviewers; alternated rounds, medians."""
    payloads = jpeg_payloads(32, 256)
    modes = {"not kept": ("false", 0), "kept": ("true", 0), "kept, 32 reviewers": ("true", 32)}
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "models"
        root.mkdir()
        (root / "demo").symlink_to((bench_repository / "demo").resolve(), target_is_directory=True)
        for round_index in range(rounds):
            order = list(modes) if round_index % 2 == 0 else list(reversed(modes))
            for mode in order:
                retain, reviewers = modes[mode]
                with start_server(root, Path(tmp), retain_predictions=retain, repository_poll_s="0",
                                  store_url=f"sqlite:///{Path(tmp) / 'feedback.sqlite3'}") as server:
                    requests = [multipart_request(server.url, "/predict", f"{i}.jpg", p)
                                for i, p in enumerate(payloads)]
                    _load(server.url, requests, payloads[0], 2.0, 0)  # warm-up
                    runs[mode].append(_load(server.url, requests, payloads[0], seconds, reviewers,
                                            server.process.pid))
                    server.stop()
    summary = {mode: {"images_per_s": statistics.median(r["images_per_s"] for r in results),
                      "p99_ms": statistics.median(r["latency"]["p99_ms"] for r in results),
                      "server_cpu_ms_per_image": statistics.median(r["server_cpu_ms_per_image"] for r in results),
                      "feedback": sum(r["feedback"] for r in results),
                      "feedback_p99_ms": statistics.median(r["feedback_latency"]["p99_ms"] for r in results)
                      if any(r["feedback"] for r in results) else None}
               for mode, results in runs.items()}
    return {"runs": runs, "summary": summary,
            "kept_over_not_kept": summary["kept"]["images_per_s"] / summary["not kept"]["images_per_s"],
            "reviewers_over_none": summary["kept, 32 reviewers"]["images_per_s"] / summary["kept"]["images_per_s"],
            # the server's own capacity with feedback arriving, its CPU per answered image (feedback's included)
            # against without: on 2 shared cores the reviewers' client CPU also takes from the throughput above
            "server_capacity_reviewers_over_none": summary["kept"]["server_cpu_ms_per_image"]
            / summary["kept, 32 reviewers"]["server_cpu_ms_per_image"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--parts", nargs="+", choices=["gain", "cost"], default=["gain", "cost"])
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per throughput figure")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds (medians)")
    parser.add_argument("--out", type=Path, help="JSON path (default: bench/results/feedback-<time>.json)")
    args = parser.parse_args()

    ensure_model(args.repository, "demo")
    result: dict[str, Any] = {"seconds": args.seconds, "rounds": args.rounds}
    if "gain" in args.parts:
        with tempfile.TemporaryDirectory() as tmp:
            scenes = labelled_scenes(Path(tmp), 2 * SCENES, seed=2)
        result["gain"] = measure_gain(args.repository, scenes)
        print(format_table(result["gain"], ["shift", "micro_f1_before", "micro_f1_after", "labels_changed",
                                            "labels_better", "labels_worse"]), flush=True)
    if "cost" in args.parts:
        result["cost"] = measure_cost(args.repository, args.seconds, args.rounds)
        print(json.dumps(result["cost"]["summary"], indent=1), flush=True)
        print(f"kept/not kept {result['cost']['kept_over_not_kept']:.3f}; with 32 reviewers/without "
              f"{result['cost']['reviewers_over_none']:.3f}; server capacity with reviewers/without "
              f"{result['cost']['server_capacity_reviewers_over_none']:.3f}", flush=True)
    path = write_results("feedback", result, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""The service against the engine and against a 30-line baseline server, like with like, on two model sizes.

    python -m bench.service_vs_engine                       # both models (built into .cache/bench-models)
    python -m bench.service_vs_engine --models demo --rounds 1 --seconds 3

For each model (bench/models.py: the tiny demo model, decode-bound; Query2Label-ResNet-18 at 224 px, engine-bound),
on that model's JPEGs (256 px synthetic scenes for the demo, 640x480 photo-like JPEGs for the ResNet):
  raw       a plain onnxruntime session with its defaults (threads spin) on ready tensors, batch 1 and B (ceiling)
  engine    the service's own engine class and settings on ready tensors
  pipeline  decode + preprocess + that engine in-process, batch 1 and B                 (what a batch job gets)
  baseline  bench/baseline_server.py: FastAPI, decode + session.run in a thread, batch 1, onnxruntime defaults
  labelserve  `python -m service` with its defaults (max batch B)
Servers take closed-loop single-image requests (JPEG in, JSON out) at each concurrency; the load client shares the
machine. The servers are measured in `--rounds` rounds, their order rotating each round, and every server figure
is the median over the rounds. CPU seconds per image are read from /proc for the whole server process; "outside
the engine" subtracts what the engine as served costs per image at the batch size the server formed.
Prints a table and the issue's targets per model; writes JSON (bench/results/serving-<model>-*.json).
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import format_table, write_results
from bench.engine import bench_batch, open_session, session_runner, time_engine
from bench.images import jpeg_payloads, photo_payloads
from bench.models import DEFAULT_REPOSITORY, ENGINE_BOUND_MODEL, PHOTO_MODELS, ensure_model
from bench.servers import serve, tuned_config
from labelserve.bundle import list_versions, load_bundle
from labelserve_tools.loadgen import run_level

SERVERS = ("baseline", "labelserve")
_LEVEL_FIELDS = ("images_per_s", "mean_batch_size", "server_cpu_s_per_image", "server_cores")


def _payloads(model: str, count: int = 64) -> list[bytes]:
    return photo_payloads(count) if model in PHOTO_MODELS else jpeg_payloads(count, 256)


def measure_in_process(repository: Path, model: str, batches: list[int], seconds: float, payloads: list[bytes],
                       engine: str = "onnxruntime", jpeg_decode: str = "pillow") -> dict[int, dict[str, Any]]:
    """Per batch size: the engine as the service runs it (its own engine class and settings), the pipeline around
    it, and for onnxruntime also a raw session with onnxruntime's defaults (spinning threads: the ceiling)."""
    from service.engines import create_engine

    bundle = load_bundle(repository / model / str(list_versions(repository / model)[-1]))
    outputs = [bundle.manifest.outputs.logits.name]
    served = create_engine(bundle, max_batch_size=max(batches), engine=engine)
    served.load()
    run = lambda tensors: served.run(tensors, outputs)  # noqa: E731
    prepare = None
    if jpeg_decode == "torch":  # the service's own torch JPEG path, on the same device it would use
        from service.pipeline.torch_jpeg import TorchJpegPreprocessor, torch_device

        prepare = TorchJpegPreprocessor(bundle.manifest.input, torch_device("auto"))
    results = {batch: bench_batch(run, bundle.manifest.input, payloads, batch, seconds, prepare)
               for batch in batches}
    served.close()
    if engine == "onnxruntime":
        raw = session_runner(open_session(bundle.file("model.onnx"), threads=0), outputs)
        for batch, result in results.items():
            tensors = np.random.default_rng(0).standard_normal((batch, *bundle.manifest.input.shape),
                                                                dtype=np.float32)
            timing = time_engine(raw, tensors, seconds)
            result["raw_engine_images_per_s"] = timing["images_per_s"]
            result["raw_engine_latency"] = timing["latency"]
            result["raw_engine_cpu_s_per_image"] = timing["cpu_s_per_image"]
    return results


def _server_kind(name: str, settings: dict[str, str]) -> tuple[str, dict[str, str]]:
    """What `bench.servers.serve` starts for a server name, and its settings: "labelserve-unbatched" is labelserve
    with a max batch size of 1 (what batching gains)."""
    if name == "labelserve-unbatched":
        return "labelserve", {**settings, "max_batch_size": "1"}
    return name, settings if name.startswith("labelserve") else {}


def measure_servers(repository: Path, model: str, servers: list[str], concurrencies: list[int], seconds: float,
                    rounds: int, payloads: list[bytes], settings: dict[str, str]) -> dict[str, list[list[dict]]]:
    """Server -> rounds -> levels. Round r starts with server r (mod the count), so no server always goes first."""
    results: dict[str, list[list[dict]]] = {name: [] for name in servers}
    for round_index in range(rounds):
        order = servers[round_index % len(servers):] + servers[:round_index % len(servers)]
        for name in order:
            print(f"  round {round_index + 1}/{rounds}: {name} at concurrency {concurrencies} ...", flush=True)
            kind, own_settings = _server_kind(name, settings)
            with serve(kind, repository, model, **own_settings) as server:
                levels = [run_level(server.url, c, seconds, payloads, None, server_pid=server.pid)
                          for c in concurrencies]
            results[name].append(levels)
    return results


def _median_level(rounds: list[list[dict]], index: int) -> dict[str, Any]:
    levels = [levels[index] for levels in rounds]
    median = {"concurrency": levels[0]["concurrency"], "rounds": len(levels),
              "errors": sum(sum(level["errors"].values()) for level in levels)}
    for field in _LEVEL_FIELDS:
        median[field] = statistics.median(level[field] for level in levels)
    for field in ("p50_ms", "p99_ms"):
        median[field] = statistics.median(level["latency"][field] for level in levels)
    median["images_per_s_range"] = [min(lv["images_per_s"] for lv in levels), max(lv["images_per_s"] for lv in levels)]
    return median


def engine_cpu_s_per_image(in_process: dict[int, dict[str, Any]], batch: float) -> float:
    """CPU seconds per image of the engine as served at a (mean) batch size, from the two measured batch sizes:
    per-image cost a + c / batch (a fixed per-batch cost spread over its images)."""
    sizes = sorted(in_process)
    small, large = sizes[0], sizes[-1]
    cpu_small = in_process[small]["engine_cpu_s_per_image"]
    cpu_large = in_process[large]["engine_cpu_s_per_image"]
    if small == large:
        return cpu_small
    per_batch = (cpu_small - cpu_large) / (1 / small - 1 / large)
    return cpu_large + per_batch * (1 / batch - 1 / large)


def outside_engine_s(in_process: dict[int, dict[str, Any]], level: dict[str, Any]) -> float:
    """A server level's CPU seconds per image beyond what the engine as served costs at the batch size it formed:
    HTTP, multipart, decode, preprocess, batching and JSON."""
    return level["server_cpu_s_per_image"] - engine_cpu_s_per_image(in_process, level["mean_batch_size"])


def _targets(model: str, in_process: dict[int, dict[str, Any]], medians: dict[str, list[dict]],
             batch: int) -> list[dict[str, Any]]:
    """The issue's targets for this model's regime, as measured ratios (met or not, never forced)."""
    ours = {level["concurrency"]: level for level in medians.get("labelserve", [])}
    base = {level["concurrency"]: level for level in medians.get("baseline", [])}
    top = max(ours) if ours else None
    if top is None:
        return []
    targets = []
    if model == ENGINE_BOUND_MODEL and "raw_engine_images_per_s" in in_process[batch]:
        targets.append({"target": f"labelserve c={top} / raw onnxruntime batch {batch}", "goal": ">= 0.95",
                        "value": ours[top]["images_per_s"] / in_process[batch]["raw_engine_images_per_s"],
                        "threshold": 0.95})
        if top in base:
            targets.append({"target": f"labelserve c={top} / baseline c={top}", "goal": ">= 1.1",
                            "value": ours[top]["images_per_s"] / base[top]["images_per_s"], "threshold": 1.1})
        if 1 in ours and 1 in base:
            targets.append({"target": "labelserve c=1 p50 - baseline c=1 p50 (ms)", "goal": "<= 0",
                            "value": ours[1]["p50_ms"] - base[1]["p50_ms"], "threshold": 0.0, "lower_is_better": True})
    else:
        targets.append({"target": f"labelserve c={top} / pipeline batch {batch}", "goal": ">= 0.9",
                        "value": ours[top]["images_per_s"] / in_process[batch]["pipeline_images_per_s"],
                        "threshold": 0.9})
        if 1 in ours:
            single = in_process[1]
            engine_ms = single["engine_latency"]["p50_ms"]
            decode_ms = single["pipeline_latency"]["p50_ms"] - engine_ms
            targets.append({"target": "labelserve c=1 p50 - (engine + decode) b=1 p50 (ms)", "goal": "<= 2",
                            "value": ours[1]["p50_ms"] - engine_ms - decode_ms, "threshold": 2.0,
                            "lower_is_better": True})
    tuned = {level["concurrency"]: level for level in medians.get("labelserve-tuned", [])}
    if model != ENGINE_BOUND_MODEL and top in tuned:
        targets.append({"target": f"labelserve-tuned c={top} / pipeline batch {batch}", "goal": ">= 0.9",
                        "value": tuned[top]["images_per_s"] / in_process[batch]["pipeline_images_per_s"],
                        "threshold": 0.9})
    for name, levels in medians.items():  # an earlier commit's service measured in the same run
        if name.startswith("labelserve@") and top in {level["concurrency"] for level in levels}:
            before = next(level for level in levels if level["concurrency"] == top)
            targets.append({"target": f"CPU outside the engine, labelserve / {name} at c={top}",
                            "goal": "<= 0.5", "value": outside_engine_s(in_process, ours[top])
                            / outside_engine_s(in_process, before), "threshold": 0.5, "lower_is_better": True})
    for target in targets:
        lower = target.pop("lower_is_better", False)
        target["met"] = target["value"] <= target["threshold"] if lower else target["value"] >= target["threshold"]
    return targets


def _rows(in_process: dict[int, dict[str, Any]], medians: dict[str, list[dict]]) -> list[dict[str, Any]]:
    labels = {"raw_engine": "raw onnxruntime (defaults)", "engine": "engine as served",
              "pipeline": "pipeline (decode + preprocess + engine as served)"}
    rows = []
    for size, result in sorted(in_process.items()):
        for kind, label in labels.items():
            if f"{kind}_images_per_s" in result:
                rows.append({"path": f"{label}, batch {size}", "img/s": result[f"{kind}_images_per_s"],
                             "p50 ms": result[f"{kind}_latency"]["p50_ms"],
                             "p99 ms": result[f"{kind}_latency"]["p99_ms"],
                             "CPU ms/img": result[f"{kind}_cpu_s_per_image"] * 1000})
    for name, levels in medians.items():
        for level in levels:
            row = {"path": f"{name}, c={level['concurrency']}", "img/s": level["images_per_s"],
                   "p50 ms": level["p50_ms"], "p99 ms": level["p99_ms"],
                   "CPU ms/img": level["server_cpu_s_per_image"] * 1000, "cores": level["server_cores"],
                   "mean batch": level["mean_batch_size"], "errors": level["errors"]}
            if name.startswith("labelserve"):
                row["CPU ms/img outside engine"] = outside_engine_s(in_process, level) * 1000
            rows.append(row)
    return rows


def bench_model(repository: Path, model: str, args: argparse.Namespace) -> dict[str, Any]:
    """Everything for one model: in-process figures, the servers over rounds, medians, targets; printed and saved."""
    payloads = _payloads(model)
    batches = sorted({1, args.batch})
    print(f"[{model}] engine and in-process pipeline at batch {batches} ...", flush=True)
    in_process = measure_in_process(repository, model, batches, args.seconds, payloads, args.engine,
                                    args.jpeg_decode)
    settings = {"max_batch_size": str(args.batch), "engine": args.engine, "jpeg_decode": args.jpeg_decode}
    print(f"[{model}] servers {args.servers}, {args.rounds} rounds ...", flush=True)
    rounds = measure_servers(repository, model, args.servers, args.concurrency, args.seconds, args.rounds, payloads,
                             settings)
    medians = {name: [_median_level(runs, i) for i in range(len(args.concurrency))] for name, runs in rounds.items()}
    rows = _rows(in_process, medians)
    targets = _targets(model, in_process, medians, args.batch)
    print()
    print(format_table(rows, ["path", "img/s", "p50 ms", "p99 ms", "CPU ms/img", "CPU ms/img outside engine",
                              "cores", "mean batch", "errors"]))
    if targets:
        print()
        print(format_table(targets, ["target", "goal", "value", "met"]))
    document = {"model": model, "engine": args.engine, "jpeg_decode": args.jpeg_decode, "batch": args.batch,
                "concurrency": args.concurrency, "seconds": args.seconds, "rounds": args.rounds,
                "in_process": {str(k): v for k, v in in_process.items()}, "servers": rounds, "medians": medians,
                "rows": rows, "targets": targets}
    if "labelserve-tuned" in args.servers:
        document["tuned_config"] = tuned_config(repository, model)
    out = args.out_dir / f"serving-{model}.json" if args.out_dir else None
    path = write_results(f"serving-{model}", document, out)
    print(f"\nwrote {path}\n", flush=True)
    return document


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY,
                        help="model repository (the benchmark models are built into it when missing)")
    parser.add_argument("--models", nargs="+", default=["demo", ENGINE_BOUND_MODEL])
    parser.add_argument("--servers", nargs="+", default=list(SERVERS),
                        help="baseline, labelserve (its defaults), labelserve-unbatched (max batch 1), "
                             "labelserve-tuned (with the model's config.json from `labelserve tune`), and "
                             "labelserve@<commit> for the service as it was at a commit")
    parser.add_argument("--batch", type=int, default=16, help="engine batch size = the service's max batch size")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per figure")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the servers (medians)")
    parser.add_argument("--engine", choices=["onnxruntime", "tensorrt", "torch"], default="onnxruntime",
                        help="tensorrt: the bundle's plan (export --tensorrt); torch: its torch.export program")
    parser.add_argument("--jpeg-decode", choices=["pillow", "torch"], default="pillow",
                        help="torch: JPEGs decoded and preprocessed by torch (nvJPEG on a GPU)")
    parser.add_argument("--out-dir", type=Path, help="write serving-<model>.json here (default: timestamped files "
                                                     "in bench/results)")
    args = parser.parse_args()
    # a SIGTERM (e.g. from `timeout` in bench/gpu_session.sh) unwinds the with-blocks, so the servers started here,
    # which run in their own sessions, are stopped too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    for model in args.models:
        ensure_model(args.repository, model)
    for model in args.models:
        bench_model(args.repository, model, args)


if __name__ == "__main__":
    main()

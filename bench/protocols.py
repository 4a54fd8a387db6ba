"""The three protocols on one server: `/predict` (multipart), OIP over HTTP (binary tensors) and OIP over gRPC,
each driven by two clients, against the in-process pipeline and the 30-line baseline server.

    python -m bench.protocols --servers baseline labelserve labelserve@<commit> --out bench/results/protocols.json
    python -m bench.protocols --models light-q2l --rounds 1 --seconds 5 --clients own     # a quick look

For every bench model (bench/models.py: demo, light-q2l, resnet18-q2l) each server asked for (`baseline`:
bench/baseline_server.py, /predict only; `labelserve` with its defaults; `labelserve@<commit>` for the service as it
was, to measure before and after) answers the same 640x480 JPEGs, one image per request, from closed-loop clients at
concurrency 1 and 32, each protocol and client in its turn, the order rotated every round (medians over rounds).
Two clients per protocol, each in this process beside the server on the same cores:
  own    the project's: `/predict` and OIP/HTTP by labelserve_tools.loadgen's raw keep-alive client (requests
         encoded once), gRPC by bench.grpc_raw_client (tritonclient's messages serialized once, written as HTTP/2
         frames on one connection: grpcio's own client costs 0.25 ms of CPU per call, this one 0.1)
  plain  as users write them (bench/plain_clients.py): httpx for /predict and OIP/HTTP, tritonclient.grpc.aio
What a figure includes: JPEG in, the protocol's answer out. Beside each: the server's CPU per image and cores used
(its whole process tree, from /proc), the client's CPU per image, and the mean batch the server formed (/metrics).
The in-process pipeline (decode + preprocess + the engine as served, batch 1 and 16, no server, no client) is
measured first; the light model's targets (issue 22) are printed and saved, met or not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import statistics
import struct
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench._common import format_table, machine, write_results
from bench.grpc_raw_client import closed_loop_grpc
from bench.images import photo_payloads
from bench.models import DEFAULT_REPOSITORY, LIGHT_MODEL, ensure_model
from bench.plain_clients import run_plain
from bench.servers import RunningServer, serve, split_kind
from labelserve_tools.loadgen import batch_totals, closed_loop, multipart_request, percentiles_ms, process_tree_cpu_s
from labelserve_tools.local_server import grpc_target_in

__all__ = ["CLIENTS", "GRPC_INFER", "PROTOCOLS", "grpc_infer_message", "measure", "targets"]

PROTOCOLS = ("predict", "oip-http", "grpc")
GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"
CLIENTS = ("own", "plain")
MODELS = ("demo", LIGHT_MODEL, "resnet18-q2l")
PIPELINE_BATCH = 16


def _oip_http_request(url: str, model: str, payload: bytes) -> bytes:
    """A complete binary-extension infer request for one encoded image, ready to write."""
    header = json.dumps({"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(payload) + 4}}],
                         "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}).encode()
    body = header + struct.pack("<I", len(payload)) + payload
    host = url.removeprefix("http://")
    head = (f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\n"
            f"Inference-Header-Content-Length: {len(header)}\r\nContent-Length: {len(body)}\r\n"
            "Connection: keep-alive\r\n\r\n").encode()
    return head + body


def grpc_infer_message(model: str, payload: bytes) -> bytes:
    """One JPEG as tritonclient.grpc sends it (`image_bytes`, BYTES [1], in `raw_input_contents`), serialized."""
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=model)
    request.inputs.add(name="image_bytes", datatype="BYTES", shape=[1])
    request.outputs.add(name="probabilities")
    request.raw_input_contents.append(struct.pack("<I", len(payload)) + payload)
    return request.SerializeToString()


async def _grpc_loop(target: str, model: str, payloads: list[bytes], concurrency: int, seconds: float,
                     latencies: list[float], statuses: Counter) -> float:
    """`concurrency` callers on one connection (as one tritonclient.grpc channel), back to back for `seconds`, with
    tritonclient's messages serialized once and sent by bench.grpc_raw_client."""
    messages = [grpc_infer_message(model, payload) for payload in payloads]
    return await closed_loop_grpc(target, GRPC_INFER, messages, concurrency, seconds, latencies, statuses)


def _run(protocol: str, client: str, server: RunningServer, target: str, model: str, payloads: list[bytes],
         concurrency: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: Counter = Counter()
    batches0, cpu0, client0 = batch_totals(server.url), process_tree_cpu_s(server.pid), time.process_time()
    if client == "plain":
        elapsed = run_plain(protocol, server.url, target, model, payloads, concurrency, seconds, latencies, statuses)
    elif protocol == "grpc":
        elapsed = asyncio.run(_grpc_loop(target, model, payloads, concurrency, seconds, latencies, statuses))
    else:
        requests = ([multipart_request(server.url, "/predict", f"image{i}.jpg", p, {"model": model})
                     for i, p in enumerate(payloads)] if protocol == "predict" else
                    [_oip_http_request(server.url, model, p) for p in payloads])
        elapsed = asyncio.run(closed_loop(server.url, requests, concurrency, seconds, latencies, statuses))
    client_cpu, cpu1, batches1 = time.process_time() - client0, process_tree_cpu_s(server.pid), batch_totals(server.url)
    ok = statuses.get(200, 0)
    batch_count = batches1[1] - batches0[1]
    return {"images_per_s": ok / elapsed, "latency": percentiles_ms(latencies), "ok": ok,
            "errors": {str(k): v for k, v in statuses.items() if k != 200},
            "server_cpu_ms_per_image": 1000 * (cpu1 - cpu0) / ok if ok else math.nan,
            "server_cores": (cpu1 - cpu0) / elapsed,
            "client_cpu_ms_per_image": 1000 * client_cpu / ok if ok else math.nan,
            "mean_batch_size": (batches1[0] - batches0[0]) / batch_count if batch_count else math.nan}


def _grpc_target(server: RunningServer) -> str | None:
    """The server's gRPC address from its log; None for a server without gRPC (a commit before it)."""
    return grpc_target_in(server.log_path.read_text(encoding="utf-8", errors="replace"))


def _serve(kind: str, repository: Path, model: str) -> contextlib.AbstractContextManager[RunningServer]:
    """bench.servers' server `kind`, with `LABELSERVE_*` settings after a colon: `labelserve:grpc=false,port=0`."""
    name, settings = split_kind(kind)
    return serve(name, repository, model, **settings)


def _speaks(kind: str, target: str | None, protocol: str) -> bool:
    """The baseline speaks /predict only; a labelserve from before gRPC has no gRPC `target`."""
    if kind == "baseline":
        return protocol == "predict"
    return protocol != "grpc" or target is not None


_FIGURES = ("images_per_s", "server_cpu_ms_per_image", "server_cores", "client_cpu_ms_per_image", "mean_batch_size")


def measure(kinds: list[str], repository: Path, model: str, payloads: list[bytes], rounds: int, seconds: float,
            concurrencies: tuple[int, ...], clients: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every server kind (bench.servers: `baseline`, `labelserve`, `labelserve@<commit>`), all up at once, every
    protocol it speaks with every client at every concurrency, `rounds` times in rotated order; medians per cell."""
    runs: dict[tuple[str, str, str, int], list[dict[str, Any]]] = {}
    with contextlib.ExitStack() as stack:
        servers = {kind: stack.enter_context(_serve(kind, repository, model)) for kind in kinds}
        grpc_targets = {kind: _grpc_target(server) for kind, server in servers.items()}  # read from each log once
        cells = [(kind, protocol, client) for kind in kinds for protocol in PROTOCOLS for client in clients
                 if _speaks(split_kind(kind)[0], grpc_targets[kind], protocol)]
        for kind, protocol, client in cells:  # warm-up: every path once
            _run(protocol, client, servers[kind], grpc_targets[kind] or "", model, payloads, 8, min(2.0, seconds))
        for round_index in range(rounds):
            shift = round_index % len(cells)
            for concurrency in concurrencies:
                for kind, protocol, client in cells[shift:] + cells[:shift]:
                    server = servers[kind]
                    result = _run(protocol, client, server, grpc_targets[kind] or "", model, payloads,
                                  concurrency, seconds)
                    runs.setdefault((kind, protocol, client, concurrency), []).append(result)
                    print(f"  round {round_index + 1}/{rounds} {model} {kind} {protocol:8} {client:5} "
                          f"c={concurrency:<3} {result['images_per_s']:7.1f} img/s  "
                          f"p50 {result['latency']['p50_ms']:6.1f} ms  p99 {result['latency']['p99_ms']:6.1f} ms  "
                          f"batch {result['mean_batch_size']:5.1f}  server {result['server_cores']:.2f} cores",
                          flush=True)
    rows = []
    for (kind, protocol, client, concurrency), results in runs.items():
        row = {"model": model, "server": kind, "protocol": protocol, "client": client, "concurrency": concurrency}
        row.update({figure: statistics.median(r[figure] for r in results) for figure in _FIGURES})
        row.update({"p50_ms": statistics.median(r["latency"]["p50_ms"] for r in results),
                    "p99_ms": statistics.median(r["latency"]["p99_ms"] for r in results),
                    "errors": sum(sum(r["errors"].values()) for r in results), "rounds": results})
        rows.append(row)
    return rows


def _pipeline(repository: Path, model: str, payloads: list[bytes], seconds: float) -> dict[str, Any]:
    """The in-process pipeline (no server, no client) at batch 1 and PIPELINE_BATCH, as bench.service_vs_engine
    measures it: decode + preprocess + the service's engine with its settings."""
    from bench.service_vs_engine import measure_in_process

    figures = measure_in_process(repository, model, [1, PIPELINE_BATCH], seconds, payloads)
    return {str(batch): {"images_per_s": result["pipeline_images_per_s"],
                         "p50_ms": result["pipeline_latency"]["p50_ms"],
                         "engine_images_per_s": result["engine_images_per_s"],
                         "engine_cpu_ms_per_image": 1000 * result["engine_cpu_s_per_image"]}
            for batch, result in figures.items()}


def targets(model: str, rows: list[dict[str, Any]], pipeline: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 22's targets on the light model, per protocol and client: at 32 clients >= 0.85x the in-process
    pipeline at batch 16 (the project's own client; the plain client's ratio is shown beside it) and >= 1.2x the
    baseline driven by the same client; at 1 client a p50 no higher than the baseline's. Measured, never forced."""
    if model != LIGHT_MODEL:
        return []
    cell = {(r["server"], r["protocol"], r["client"], r["concurrency"]): r for r in rows}
    found = []
    for protocol in PROTOCOLS:
        for client in CLIENTS:
            ours, ours_1 = cell.get(("labelserve", protocol, client, 32)), cell.get(("labelserve", protocol, client, 1))
            base, base_1 = cell.get(("baseline", "predict", client, 32)), cell.get(("baseline", "predict", client, 1))
            if ours is not None and str(PIPELINE_BATCH) in pipeline:
                found.append({"target": f"{protocol} c=32 / pipeline batch {PIPELINE_BATCH}", "client": client,
                              "goal": ">= 0.85" if client == "own" else "(shown)",
                              "value": ours["images_per_s"] / pipeline[str(PIPELINE_BATCH)]["images_per_s"],
                              "threshold": 0.85 if client == "own" else None})
            if ours is not None and base is not None:
                found.append({"target": f"{protocol} c=32 / baseline c=32", "client": client, "goal": ">= 1.2",
                              "value": ours["images_per_s"] / base["images_per_s"], "threshold": 1.2})
            if ours_1 is not None and base_1 is not None:
                found.append({"target": f"{protocol} c=1 p50 - baseline c=1 p50 (ms)", "client": client,
                              "goal": "<= 0", "value": ours_1["p50_ms"] - base_1["p50_ms"], "threshold": 0.0,
                              "lower_is_better": True})
    for target in found:
        lower, threshold = target.pop("lower_is_better", False), target["threshold"]
        target["met"] = None if threshold is None else (target["value"] <= threshold if lower
                                                         else target["value"] >= threshold)
    return found


def changes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """labelserve against every labelserve@<commit> measured beside it, per model, protocol, client and concurrency:
    throughput ratio and p50 difference (the "nothing got slower" check)."""
    cell = {(r["model"], r["server"], r["protocol"], r["client"], r["concurrency"]): r for r in rows}
    found = []
    for (model, server, protocol, client, concurrency), before in cell.items():
        now = cell.get((model, "labelserve", protocol, client, concurrency))
        if server.startswith("labelserve@") and now is not None:
            found.append({"model": model, "against": server, "protocol": protocol, "client": client,
                          "concurrency": concurrency, "img/s ratio": now["images_per_s"] / before["images_per_s"],
                          "p50 diff ms": now["p50_ms"] - before["p50_ms"]})
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--servers", nargs="+", default=["baseline", "labelserve"],
                        help="baseline (bench/baseline_server.py, /predict only), labelserve (this checkout) and "
                             "labelserve@<commit> (before/after), each with optional settings after a colon "
                             "(labelserve:grpc=false)")
    parser.add_argument("--clients", nargs="+", default=list(CLIENTS), choices=CLIENTS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="per protocol, client, concurrency and round")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/protocols-<time>.json)")
    args = parser.parse_args()
    payloads = photo_payloads(16)
    rows: list[dict[str, Any]] = []
    pipelines: dict[str, dict[str, Any]] = {}
    found: list[dict[str, Any]] = []
    for model in args.models:
        ensure_model(args.repository, model)
        print(f"{model}: in-process pipeline at batch 1 and {PIPELINE_BATCH} ...", flush=True)
        pipelines[model] = _pipeline(args.repository, model, payloads, min(args.seconds, 5.0))
        print(f"{model}: {len(PROTOCOLS)} protocols x {args.clients} clients x {args.concurrency} concurrency x "
              f"{args.rounds} rounds of {args.seconds:g} s", flush=True)
        model_rows = measure(args.servers, args.repository, model, payloads, args.rounds, args.seconds,
                             tuple(args.concurrency), tuple(args.clients))
        rows += model_rows
        found += targets(model, model_rows, pipelines[model])
    print(format_table([{k: v for k, v in row.items() if k != "rounds"} for row in rows],
                       ["model", "server", "protocol", "client", "concurrency", "images_per_s", "p50_ms", "p99_ms",
                        "mean_batch_size", "server_cores", "server_cpu_ms_per_image", "client_cpu_ms_per_image",
                        "errors"]))
    for model, figures in pipelines.items():
        print(f"{model} pipeline: " + ", ".join(f"batch {b} {f['images_per_s']:.1f} img/s (p50 {f['p50_ms']:.2f} ms)"
                                                for b, f in figures.items()))
    if found:
        print(format_table(found, ["target", "client", "goal", "value", "met"]))
    compared = changes(rows)
    if compared:
        print(format_table(compared, ["model", "against", "protocol", "client", "concurrency", "img/s ratio",
                                      "p50 diff ms"]))
    path = write_results("protocols", {"benchmark": "protocols", "machine": machine(), "rounds": args.rounds,
                                       "seconds": args.seconds, "servers": args.servers, "clients": args.clients,
                                       "pipeline": pipelines, "targets": found, "changes": compared, "rows": rows},
                         args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""The three protocols on one server: `/predict` (multipart), OIP over HTTP (binary tensors) and OIP over gRPC.

    python -m bench.protocols --out bench/results/protocols.json
    python -m bench.protocols --models demo --rounds 1 --seconds 5     # a quick look

For every bench model each server asked for (default settings; `labelserve@<commit>` for the service as it was, to
measure before and after) answers the same 640x480 JPEGs, one image per
request, from closed-loop clients at concurrency 1 and 32, each protocol in its turn, the order rotated every round
(medians over rounds). Clients as users write them for each protocol, all on an asyncio loop in this process:
`/predict` by the project's raw keep-alive HTTP client (labelserve_tools.loadgen), OIP/HTTP by the same client with the
binary tensor extension (what tritonclient[http] sends), gRPC by grpcio's asyncio channel with tritonclient's
messages (raw_input_contents, what tritonclient.grpc sends). What a figure includes: JPEG in, the protocol's answer
out (the gRPC and OIP answers carry logits and probabilities, /predict's the labels as JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import struct
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench._common import format_table, machine, write_results
from bench.images import photo_payloads
from bench.models import DEFAULT_REPOSITORY, ensure_model
from bench.servers import RunningServer, serve
from labelserve_tools.loadgen import closed_loop, multipart_request, percentiles_ms
from labelserve_tools.local_server import grpc_target_in

__all__ = ["PROTOCOLS", "measure"]

PROTOCOLS = ("predict", "oip-http", "grpc")
MODELS = ("demo", "resnet18-q2l")


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


async def _grpc_loop(target: str, model: str, payloads: list[bytes], concurrency: int, seconds: float,
                     latencies: list[float], statuses: Counter) -> float:
    """`concurrency` callers on one channel (as one tritonclient.grpc client), back to back for `seconds`."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    requests = []
    for payload in payloads:
        request = service_pb2.ModelInferRequest(model_name=model)
        request.inputs.add(name="image_bytes", datatype="BYTES", shape=[1])
        request.outputs.add(name="probabilities")
        request.raw_input_contents.append(struct.pack("<I", len(payload)) + payload)
        requests.append(request)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        started = time.perf_counter()
        deadline = started + seconds

        async def caller(offset: int) -> None:
            index = offset
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                try:
                    await stub.ModelInfer(requests[index % len(requests)], timeout=60)
                    latencies.append(time.perf_counter() - sent)
                    statuses[200] += 1
                except grpc.aio.AioRpcError as error:
                    statuses[error.code().name] += 1
                index += 1

        await asyncio.gather(*(caller(i * 7) for i in range(concurrency)))
        return time.perf_counter() - started


def _run(protocol: str, url: str, target: str, model: str, payloads: list[bytes], concurrency: int,
         seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: Counter = Counter()
    if protocol == "grpc":
        elapsed = asyncio.run(_grpc_loop(target, model, payloads, concurrency, seconds, latencies, statuses))
    else:
        requests = ([multipart_request(url, "/predict", f"image{i}.jpg", p, {"model": model})
                     for i, p in enumerate(payloads)] if protocol == "predict" else
                    [_oip_http_request(url, model, p) for p in payloads])
        elapsed = asyncio.run(closed_loop(url, requests, concurrency, seconds, latencies, statuses))
    ok = statuses.get(200, 0)
    return {"images_per_s": ok / elapsed, "latency": percentiles_ms(latencies), "ok": ok,
            "errors": {str(k): v for k, v in statuses.items() if k != 200}}


def _grpc_target(server: RunningServer) -> str | None:
    """The server's gRPC address from its log; None for a server without gRPC (a commit before it)."""
    return grpc_target_in(server.log_path.read_text(encoding="utf-8", errors="replace"))


def _serve(kind: str, repository: Path, model: str) -> contextlib.AbstractContextManager[RunningServer]:
    """bench.servers' server `kind`, with `LABELSERVE_*` settings after a colon: `labelserve:grpc=false,port=0`."""
    name, _, options = kind.partition(":")
    settings = dict(option.split("=", 1) for option in options.split(",") if option)
    return serve(name, repository, model, **settings)


def measure(kinds: list[str], repository: Path, model: str, payloads: list[bytes], rounds: int, seconds: float,
            concurrencies: tuple[int, ...]) -> list[dict[str, Any]]:
    """Every server kind (bench.servers: `labelserve`, `labelserve@<commit>`), all up at once, every protocol it
    speaks at every concurrency, `rounds` times in rotated order; medians per cell."""
    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    with contextlib.ExitStack() as stack:
        servers = {kind: stack.enter_context(_serve(kind, repository, model)) for kind in kinds}
        cells = [(kind, protocol) for kind in kinds for protocol in PROTOCOLS
                 if protocol != "grpc" or _grpc_target(servers[kind]) is not None]
        for kind, protocol in cells:  # warm-up: every path once
            server = servers[kind]
            _run(protocol, server.url, _grpc_target(server) or "", model, payloads, 8, min(2.0, seconds))
        for round_index in range(rounds):
            shift = round_index % len(cells)
            for concurrency in concurrencies:
                for kind, protocol in cells[shift:] + cells[:shift]:
                    server = servers[kind]
                    result = _run(protocol, server.url, _grpc_target(server) or "", model, payloads, concurrency,
                                  seconds)
                    runs.setdefault((kind, protocol, concurrency), []).append(result)
                    print(f"  round {round_index + 1}/{rounds} {model} {kind} {protocol:8} c={concurrency:<3} "
                          f"{result['images_per_s']:7.1f} img/s  p50 {result['latency']['p50_ms']:6.1f} ms  "
                          f"p99 {result['latency']['p99_ms']:6.1f} ms", flush=True)
    rows = []
    for (kind, protocol, concurrency), results in runs.items():
        rows.append({"model": model, "server": kind, "protocol": protocol, "concurrency": concurrency,
                     "images_per_s": statistics.median(r["images_per_s"] for r in results),
                     "p50_ms": statistics.median(r["latency"]["p50_ms"] for r in results),
                     "p99_ms": statistics.median(r["latency"]["p99_ms"] for r in results),
                     "errors": sum(sum(r["errors"].values()) for r in results), "rounds": results})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--servers", nargs="+", default=["labelserve"],
                        help="labelserve (this checkout) and labelserve@<commit> (before/after), each with optional "
                             "settings after a colon (labelserve:grpc=false)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="per protocol, concurrency and round")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/protocols-<time>.json)")
    args = parser.parse_args()
    payloads = photo_payloads(16)
    rows = []
    for model in args.models:
        ensure_model(args.repository, model)
        print(f"{model}: {len(PROTOCOLS)} protocols x {args.concurrency} clients x {args.rounds} rounds of "
              f"{args.seconds:g} s", flush=True)
        rows += measure(args.servers, args.repository, model, payloads, args.rounds, args.seconds,
                        tuple(args.concurrency))
    print(format_table([{k: v for k, v in row.items() if k != "rounds"} for row in rows],
                       ["model", "server", "protocol", "concurrency", "images_per_s", "p50_ms", "p99_ms",
                        "errors"]))
    path = write_results("protocols", {"benchmark": "protocols", "machine": machine(), "rounds": args.rounds,
                                       "seconds": args.seconds, "servers": args.servers, "rows": rows}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""Scaling with `LABELSERVE_WORKERS`: the same closed-loop load against 1, 2, 4, 8 worker processes on the CPU.

    python -m bench.workers --repository models --model demo --workers 1 2 4 8 --concurrency 64

For each worker count the service is started (`python -m service`, onnxruntime on the CPU, each worker's intra-op
threads = cpus // N as the server chooses them), warmed up, and loaded by `--client-processes` closed-loop client
processes (one asyncio client can itself become the bottleneck at thousands of requests per second) that together
keep `concurrency` single-image requests in flight for `--seconds`. Reported per worker count: images/s, p50/p99,
the mean batch formed (from the server's own /metrics, which adds up every worker), the server's CPU use in cores
(supervisor + workers, from /proc) and the speed-up over the first worker count. The clients share the machine.
Prints a table and writes JSON (bench/results/workers-*.json).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench._common import format_table, percentiles_ms, write_results
from bench.images import jpeg_payloads
from labelserve_tools.loadgen import closed_loop, multipart_request, process_tree_cpu_s
from labelserve_tools.local_server import ServerProcess, start_server

_THREADS = re.compile(r"\((\d+) CPUs; (\d+) onnxruntime intra-op threads? each")  # service.workers' start-up line
_START_MARGIN_S = 0.5  # for every client process to be waiting on the common start time


def _client(url: str, payloads: list[bytes], model: str, concurrency: int, offset: int, start_at: float,
            seconds: float) -> tuple[list[float], dict[str, int], float]:
    """One client process: `concurrency` closed-loop connections from `start_at` (a monotonic time, which is one
    clock for every process on Linux) for `seconds`."""
    requests = [multipart_request(url, "/predict", f"image{i}.jpg", p, {"model": model})
                for i, p in enumerate(payloads)]
    requests = requests[offset:] + requests[:offset]  # each client starts at other images
    time.sleep(max(0.0, start_at - time.monotonic()))
    latencies: list[float] = []
    statuses: Counter = Counter()
    elapsed = asyncio.run(closed_loop(url, requests, concurrency, seconds, latencies, statuses))
    return latencies, {str(k): v for k, v in statuses.items()}, elapsed


def _split(concurrency: int, processes: int) -> list[int]:
    """`concurrency` connections spread over at most `processes` client processes, none empty."""
    shares = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]
    return [share for share in shares if share > 0]


def _load(pool: ProcessPoolExecutor, url: str, payloads: list[bytes], model: str, concurrency: int,
          seconds: float, processes: int) -> tuple[list[float], Counter, float]:
    start_at = time.monotonic() + _START_MARGIN_S
    futures = [pool.submit(_client, url, payloads, model, share, index * 7, start_at, seconds)
               for index, share in enumerate(_split(concurrency, processes))]
    latencies: list[float] = []
    statuses: Counter = Counter()
    elapsed = 0.0
    for future in futures:
        client_latencies, client_statuses, client_elapsed = future.result()
        latencies += client_latencies
        statuses.update(client_statuses)
        elapsed = max(elapsed, client_elapsed)
    return latencies, statuses, elapsed


def _measure(server: ServerProcess, pool: ProcessPoolExecutor, payloads: list[bytes], model: str, concurrency: int,
             seconds: float, processes: int) -> dict[str, Any]:
    _load(pool, server.url, payloads, model, concurrency, min(2.0, seconds / 3), processes)  # warm-up
    batch_sum0 = server.metric("labelserve_batch_size_sum", model=model)
    batch_count0 = server.metric("labelserve_batch_size_count", model=model)
    cpu0 = process_tree_cpu_s(server.process.pid)
    latencies, statuses, elapsed = _load(pool, server.url, payloads, model, concurrency, seconds, processes)
    cpu1 = process_tree_cpu_s(server.process.pid)
    batches = server.metric("labelserve_batch_size_count", model=model) - batch_count0
    batched = server.metric("labelserve_batch_size_sum", model=model) - batch_sum0
    ok = statuses.get("200", 0)
    return {"concurrency": concurrency, "seconds": elapsed, "ok": ok,
            "errors": {k: v for k, v in statuses.items() if k != "200"}, "images_per_s": ok / elapsed,
            "latency": percentiles_ms(latencies), "mean_batch_size": batched / batches if batches else float("nan"),
            "server_cores": (cpu1 - cpu0) / elapsed}


def run_workers(repository: Path, model: str, worker_counts: list[int], concurrencies: list[int], seconds: float,
                payloads: list[bytes], processes: int, max_batch: int) -> list[dict[str, Any]]:
    """One row per (worker count, concurrency), each worker count on a freshly started server."""
    rows: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        for workers in worker_counts:
            with tempfile.TemporaryDirectory() as logs, \
                    start_server(repository, Path(logs), workers=str(workers), engine="onnxruntime",
                                 execution_providers="cpu", repository_poll_s="0",
                                 max_batch_size=str(max_batch)) as server:
                threads = _THREADS.search(server.log())
                for concurrency in concurrencies:
                    row = {"workers": workers,
                           "cpus": int(threads.group(1)) if threads else os.cpu_count(),
                           "intra_op_threads_per_worker": threads.group(2) if threads else "onnxruntime default",
                           **_measure(server, pool, payloads, model, concurrency, seconds, processes)}
                    rows.append(row)
                    print(f"{workers} worker(s), concurrency {concurrency}: {row['images_per_s']:.1f} img/s, "
                          f"p50 {row['latency']['p50_ms']:.1f} ms, server {row['server_cores']:.2f} cores, "
                          f"errors {row['errors']}", flush=True)
                server.stop()
    for row in rows:
        first = next(r for r in rows if r["concurrency"] == row["concurrency"])
        row["speedup"] = row["images_per_s"] / first["images_per_s"] if first["images_per_s"] else float("nan")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=Path("models"))
    parser.add_argument("--model", default="demo")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8], help="worker counts to measure")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64], help="requests kept in flight")
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per point")
    parser.add_argument("--client-processes", type=int, default=2, help="load generator processes")
    parser.add_argument("--batch", type=int, default=16, help="the service's max batch size")
    parser.add_argument("--images", type=Path, help="folder of JPEGs (default: rendered synthetic scenes)")
    parser.add_argument("--image-size", type=int, default=256, help="side of the rendered scenes")
    parser.add_argument("--out", type=Path, help="JSON path (default: bench/results/workers-<time>.json)")
    args = parser.parse_args()
    # a SIGTERM (e.g. from `timeout`) unwinds the with-blocks, so the servers started here are stopped too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    payloads = jpeg_payloads(64, args.image_size, folder=args.images)
    rows = run_workers(args.repository, args.model, args.workers, args.concurrency, args.seconds, payloads,
                       args.client_processes, args.batch)
    table = [{"workers": r["workers"], "threads/worker": r["intra_op_threads_per_worker"],
              "concurrency": r["concurrency"], "img/s": r["images_per_s"], "p50 ms": r["latency"]["p50_ms"],
              "p99 ms": r["latency"]["p99_ms"], "mean batch": r["mean_batch_size"],
              "server cores": r["server_cores"], "x first": r["speedup"], "errors": sum(r["errors"].values())}
             for r in rows]
    print()
    print(format_table(table, list(table[0])))
    path = write_results("workers", {"model": args.model, "image_size": args.image_size, "batch": args.batch,
                                     "client_processes": args.client_processes, "rows": rows}, args.out)
    print(f"\nx first = images/s over the first worker count's at the same concurrency; wrote {path}")


if __name__ == "__main__":
    main()

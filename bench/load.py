"""Closed-loop load against a running labelserve: images/s, latency percentiles and errors per concurrency.

    labelserve serve --repository models &        # or: make serve
    python -m bench.load --url http://127.0.0.1:8000 --concurrency 1 8 32

Each of `concurrency` clients posts one JPEG to /predict, waits for the JSON answer, and posts the next, for
`--seconds`; requests are encoded once up front (`bench.lean_http`) so the client takes little of the CPU it
shares with the server. The server's own /metrics is scraped before and after to report the mean batch size it formed.
Prints a table and writes JSON (bench/results/load-*.json).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from collections import Counter
from pathlib import Path

import httpx

from bench._common import format_table, percentiles_ms, write_results
from bench.images import jpeg_payloads
from bench.lean_http import Connection, ProtocolError, multipart_request
from bench.servers import process_tree_cpu_s

_BATCH_SUM = re.compile(r"^labelserve_batch_size_sum\{[^}]*\}\s+([0-9.e+]+)$", re.MULTILINE)
_BATCH_COUNT = re.compile(r"^labelserve_batch_size_count\{[^}]*\}\s+([0-9.e+]+)$", re.MULTILINE)


def _batch_totals(url: str) -> tuple[float, float]:
    """Images and batches the server has run, from its /metrics (NaN for a server without them)."""
    response = httpx.get(f"{url}/metrics", timeout=30)
    if response.status_code != 200:
        return float("nan"), float("nan")
    text = response.text
    return sum(map(float, _BATCH_SUM.findall(text))), sum(map(float, _BATCH_COUNT.findall(text)))


async def _client_loop(url: str, requests: list[bytes], offset: int, deadline: float, latencies: list[float],
                       statuses: Counter) -> None:
    connection = Connection(url)
    index = offset
    try:
        while time.perf_counter() < deadline:
            request = requests[index % len(requests)]
            index += 1
            started = time.perf_counter()
            try:
                response = await connection.send(request)
            except (OSError, ProtocolError, asyncio.IncompleteReadError) as exc:
                statuses[type(exc).__name__] += 1
                await connection.close()
                continue
            statuses[response.status] += 1
            if response.status == 200:
                latencies.append(time.perf_counter() - started)
    finally:
        await connection.close()


async def _closed_loop(url: str, requests: list[bytes], concurrency: int, seconds: float, latencies: list[float],
                       statuses: Counter) -> float:
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(_client_loop(url, requests, i * 7, deadline, latencies, statuses)
                           for i in range(concurrency)))
    return time.perf_counter() - started


def run_level(url: str, concurrency: int, seconds: float, payloads: list[bytes], model: str | None,
              server_pid: int | None = None) -> dict:
    """One closed-loop run at a fixed concurrency: `concurrency` clients, one image per request, no think time.

    With `server_pid`, the server's CPU seconds (all threads and worker processes) over the measured window are
    reported per answered image.
    """
    fields = {"model": model} if model else None
    requests = [multipart_request(url, "/predict", f"image{i}.jpg", p, fields) for i, p in enumerate(payloads)]
    asyncio.run(_closed_loop(url, requests, concurrency, min(2.0, seconds / 5), [], Counter()))  # warm-up
    batch_sum0, batch_count0 = _batch_totals(url)
    cpu0 = process_tree_cpu_s(server_pid) if server_pid else 0.0
    latencies: list[float] = []
    statuses: Counter = Counter()
    elapsed = asyncio.run(_closed_loop(url, requests, concurrency, seconds, latencies, statuses))
    cpu1 = process_tree_cpu_s(server_pid) if server_pid else 0.0
    batch_sum1, batch_count1 = _batch_totals(url)
    batches = batch_count1 - batch_count0
    ok = statuses.get(200, 0)
    return {
        "concurrency": concurrency,
        "seconds": elapsed,
        "ok": ok,
        "errors": {str(k): v for k, v in statuses.items() if k != 200},
        "images_per_s": ok / elapsed,
        "latency": percentiles_ms(latencies),
        "mean_batch_size": (batch_sum1 - batch_sum0) / batches if batches else float("nan"),
        "server_cpu_s_per_image": (cpu1 - cpu0) / ok if server_pid and ok else float("nan"),
        "server_cores": (cpu1 - cpu0) / elapsed if server_pid else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--model", help="model name (default: the server's default model)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per concurrency level")
    parser.add_argument("--images", type=Path, help="folder of JPEGs (default: rendered synthetic scenes)")
    parser.add_argument("--image-size", type=int, default=256, help="side of the rendered scenes")
    parser.add_argument("--out", type=Path, help="JSON path (default: bench/results/load-<time>.json)")
    args = parser.parse_args()

    payloads = jpeg_payloads(64, args.image_size, folder=args.images)
    rows = []
    for concurrency in args.concurrency:
        result = run_level(args.url, concurrency, args.seconds, payloads, args.model)
        rows.append(result)
        print(f"concurrency {concurrency}: {result['images_per_s']:.1f} img/s, "
              f"p50 {result['latency']['p50_ms']:.1f} ms, errors {result['errors']}", flush=True)
    table = [{"concurrency": r["concurrency"], "img/s": r["images_per_s"], "p50 ms": r["latency"]["p50_ms"],
              "p90 ms": r["latency"]["p90_ms"], "p99 ms": r["latency"]["p99_ms"],
              "mean batch": r["mean_batch_size"], "errors": sum(r["errors"].values())} for r in rows]
    print()
    print(format_table(table, list(table[0])))
    path = write_results("load", {"url": args.url, "image_size": args.image_size, "rows": rows}, args.out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()

"""Overload soak: far more closed-loop clients than the queue holds, against a real server.

    python -m bench.overload --model demo --clients 128 --queue 32 --timeout-s 5 --seconds 60

The server runs with LABELSERVE_MAX_QUEUE_SIZE=--queue and LABELSERVE_REQUEST_TIMEOUT_S=--timeout-s. First its
throughput at concurrency 32 is measured (the reference), then --clients clients post single images with no pause
for --warmup + --seconds seconds. Reported for the measured window: answers by status, requests that got no HTTP
answer at all (connection reset or closed), latency of the 200s as the client saw it and as the server logged it,
the server's RSS at the start and end, and goodput (200s per second) over the reference.
Targets (issue 9): only 200/503/504, admitted p99 <= the deadline, no request without an answer, RSS growth < 10 %,
goodput >= 0.9x the concurrency-32 throughput. Prints a table and writes JSON (bench/results/overload-*.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from bench._common import format_table, percentiles_ms, write_results
from bench.images import jpeg_payloads, photo_payloads
from bench.models import DEFAULT_REPOSITORY, ENGINE_BOUND_MODEL, ensure_model
from bench.servers import serve
from labelserve_tools.loadgen import Connection, ProtocolError, multipart_request, run_level


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def _client(url: str, requests: list[bytes], offset: int, window: tuple[float, float],
                  latencies: list[float], statuses: Counter) -> None:
    """One closed-loop client; counts only what starts inside the measured window."""
    connection = Connection(url)
    index = offset
    start, end = window
    while (now := time.perf_counter()) < end:
        measured = now >= start
        request = requests[index % len(requests)]
        index += 1
        try:
            response = await connection.send(request)
        except (OSError, ProtocolError, asyncio.IncompleteReadError) as exc:
            if measured:
                statuses[f"no answer ({type(exc).__name__})"] += 1
            await connection.close()
            continue
        if measured:
            statuses[response.status] += 1
            if response.status == 200:
                latencies.append(time.perf_counter() - now)
    await connection.close()


async def _soak(url: str, requests: list[bytes], clients: int, warmup_s: float, seconds: float,
                on_start: Any) -> tuple[list[float], Counter]:
    latencies: list[float] = []
    statuses: Counter = Counter()
    start = time.perf_counter() + warmup_s
    window = (start, start + seconds)
    tasks = [asyncio.create_task(_client(url, requests, i * 7, window, latencies, statuses)) for i in range(clients)]
    await asyncio.sleep(warmup_s)
    on_start()
    await asyncio.gather(*tasks)
    return latencies, statuses


def _server_latencies(log_text: str, since: float) -> list[float]:
    """Durations (s) of the /predict 200s the server logged after `since` (wall clock), from its JSON access log."""
    durations = []
    for line in log_text.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if (entry.get("route") == "/predict" and entry.get("status") == 200 and "duration_ms" in entry
                and datetime.fromisoformat(entry["ts"]).timestamp() >= since):
            durations.append(entry["duration_ms"] / 1000.0)
    return durations


def run(model: str, repository: Path, clients: int, queue: int, timeout_s: float, warmup_s: float,
        seconds: float, reference_concurrency: int) -> dict[str, Any]:
    """The soak against one server; returns the measured figures and the targets."""
    payloads = photo_payloads(64) if model == ENGINE_BOUND_MODEL else jpeg_payloads(64, 256)
    settings = {"max_queue_size": str(queue), "request_timeout_s": str(timeout_s)}
    with serve("labelserve", repository, model, **settings) as server:
        reference = run_level(server.url, reference_concurrency, min(seconds, 10.0), payloads, None,
                              server_pid=server.pid)
        requests = [multipart_request(server.url, "/predict", f"image{i}.jpg", p) for i, p in enumerate(payloads)]
        marks: dict[str, float] = {}

        def on_start() -> None:
            marks["wall"], marks["rss"] = time.time(), rss_bytes(server.pid)

        latencies, statuses = asyncio.run(_soak(server.url, requests, clients, warmup_s, seconds, on_start))
        rss_end = rss_bytes(server.pid)
        server_latencies = _server_latencies(server.log_path.read_text(errors="replace"), marks["wall"])
    ok = statuses.get(200, 0)
    goodput = ok / seconds
    client_p = percentiles_ms(latencies)
    server_p = percentiles_ms(server_latencies)
    unexpected = {str(k): v for k, v in statuses.items() if k not in (200, 503, 504)}
    rss_growth = rss_end / marks["rss"] - 1.0
    targets = [
        {"target": "answers other than 200/503/504 (incl. no answer)", "goal": "0",
         "value": sum(unexpected.values()), "met": not unexpected},
        {"target": "admitted p99 at the client (ms)", "goal": f"<= {timeout_s * 1000:.0f}",
         "value": client_p["p99_ms"], "met": client_p["p99_ms"] <= timeout_s * 1000},
        {"target": "admitted p99 at the server (ms)", "goal": f"<= {timeout_s * 1000:.0f}",
         "value": server_p["p99_ms"], "met": server_p["p99_ms"] <= timeout_s * 1000},
        {"target": "RSS growth", "goal": "< 10 %", "value": rss_growth * 100, "met": rss_growth < 0.10},
        {"target": f"goodput / throughput at c={reference_concurrency}", "goal": ">= 0.9",
         "value": goodput / reference["images_per_s"], "met": goodput >= 0.9 * reference["images_per_s"]},
    ]
    return {"model": model, "clients": clients, "queue": queue, "timeout_s": timeout_s, "warmup_s": warmup_s,
            "seconds": seconds, "statuses": {str(k): v for k, v in statuses.items()}, "goodput": goodput,
            "reference": reference, "client_latency": client_p, "server_latency": server_p,
            "rss_start": marks["rss"], "rss_end": rss_end, "targets": targets}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--clients", type=int, default=128)
    parser.add_argument("--queue", type=int, default=32, help="LABELSERVE_MAX_QUEUE_SIZE")
    parser.add_argument("--timeout-s", type=float, default=5.0, help="LABELSERVE_REQUEST_TIMEOUT_S")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of load before measuring")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds")
    parser.add_argument("--reference-concurrency", type=int, default=32)
    parser.add_argument("--out", type=Path, help="JSON path (default: bench/results/overload-<time>.json)")
    args = parser.parse_args()

    ensure_model(args.repository, args.model)
    result = run(args.model, args.repository, args.clients, args.queue, args.timeout_s, args.warmup, args.seconds,
                 args.reference_concurrency)
    print(f"statuses: {result['statuses']}")
    print(f"goodput {result['goodput']:.1f}/s; c={args.reference_concurrency} throughput "
          f"{result['reference']['images_per_s']:.1f} img/s")
    print(f"200s at the client: {result['client_latency']}")
    print(f"200s at the server: {result['server_latency']}")
    print(f"RSS {result['rss_start'] / 2**20:.1f} -> {result['rss_end'] / 2**20:.1f} MiB\n")
    print(format_table(result["targets"], ["target", "goal", "value", "met"]))
    path = write_results("overload", result, args.out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()

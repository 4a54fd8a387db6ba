"""Hostile clients against a real server, one attack at a time, while normal clients measure what is left for them.

    python -m bench.hostile                       # demo model, the service's default settings
    python -m bench.hostile --seconds 5 --attacks slow_headers aborts --out /tmp/hostile.json

The server is `python -m service` with its defaults, except LABELSERVE_KEEP_ALIVE_S=15 (75 by default) so that idle
sockets are seen closed within the run. First 8 normal clients (closed loop, one JPEG per /predict, the project's
load client) run alone: the unloaded reference. Then each attack runs in a process of its own, persistently (an
attacker reconnects when closed), for a ramp-up and --seconds while the normal clients measure again:

  slow_headers   512 connections, each adding one header byte a second, never ending its head
  slow_bodies    2x LABELSERVE_MAX_IN_FLIGHT connections sending a real /predict body at 1 byte/s
  idle_sockets   2,000 connections that never send a byte
  header_bombs   8 connections writing an endless header as fast as the server reads it
  aborts         8 clients sending half a body, then resetting the connection

Targets per attack (issue 18): normal clients keep >= 80 % of unloaded throughput and a p99 <= 3x unloaded; every
hostile connection is closed by the server within its limit (the setting, plus one 0.5 s sweep of the connection
table); the server's RSS once the attack is over is within 10 % of before; no 5xx answer at all (the attackers are
the only ones at fault). Prints a table and writes JSON (bench/results/hostile-*.json).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import re
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench._common import format_table, percentiles_ms, write_results
from bench.hostile_attacks import ATTACKS, AttackPlan, run_attack
from bench.images import jpeg_payloads, photo_payloads
from bench.models import DEFAULT_REPOSITORY, ENGINE_BOUND_MODEL, ensure_model
from bench.overload import rss_bytes
from bench.servers import serve
from labelserve_tools.loadgen import closed_loop, multipart_request, process_tree_cpu_s
from service.http.table import SWEEP_S
from service.settings import Settings

CONCURRENCY = 8
RAMP_S = 3.0
SLACK_S = 0.25  # the attacker's own timing, on a loop with hundreds of connections
BENCH_SETTINGS = {"keep_alive_s": "15"}
_SERVER_ERRORS = re.compile(r'^labelserve_requests_total\{[^}]*status="5\d\d"[^}]*\} (\S+)', re.MULTILINE)
_CLOSED = re.compile(r'^labelserve_connections_closed_total\{reason="(\w+)"\} (\S+)', re.MULTILINE)


def attack_sizes(settings: Settings) -> dict[str, int]:
    """Hostile connections at once, per attack."""
    return {"slow_headers": 512, "slow_bodies": 2 * settings.in_flight_limit, "idle_sockets": 2000,
            "header_bombs": 8, "aborts": 8}


def attack_limits(settings: Settings) -> dict[str, float]:
    """Per attack, how long the server may leave a hostile connection open, from the start of its offending phase."""
    slow_body_bytes = settings.body_grace_s + 2  # 1 byte/s for the grace, a sweep and a little
    body_rate_s = slow_body_bytes / settings.body_min_rate if settings.body_min_rate else settings.body_stall_timeout_s
    return {"slow_headers": settings.header_timeout_s + SWEEP_S,
            "slow_bodies": min(settings.body_stall_timeout_s, settings.body_grace_s + body_rate_s) + SWEEP_S,
            "idle_sockets": settings.keep_alive_s + SWEEP_S,
            "header_bombs": settings.header_timeout_s + SWEEP_S,
            "aborts": 0.0}


class _RssPeak:
    """The largest RSS of a process, sampled every 0.25 s on a thread while in the block."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.25):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def __enter__(self) -> _RssPeak:
        self.peak = rss_bytes(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _scrape(url: str) -> tuple[float, dict[str, float]]:
    """(5xx answers so far, connections closed by the server so far by reason) from a real /metrics scrape."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    closed = {reason: float(value) for reason, value in _CLOSED.findall(text)}
    return sum(float(value) for value in _SERVER_ERRORS.findall(text)), closed


def _normal_clients(url: str, requests: list[bytes], seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: Counter = Counter()
    elapsed = asyncio.run(closed_loop(url, requests, CONCURRENCY, seconds, latencies, statuses))
    return {"images_per_s": statuses.get(200, 0) / elapsed, "latency": percentiles_ms(latencies),
            "answers": {str(status): count for status, count in statuses.items()}}


def _unloaded(url: str, requests: list[bytes], seconds: float, pid: int) -> dict[str, Any]:
    """The normal clients alone, with the server's cores meanwhile."""
    cpu, started = process_tree_cpu_s(pid), time.time()
    result = _normal_clients(url, requests, seconds)
    return {**result, "server_cores": (process_tree_cpu_s(pid) - cpu) / (time.time() - started)}


def _attack(plan: AttackPlan, url: str, requests: list[bytes], pid: int) -> dict[str, Any]:
    """One attack with the normal clients measuring meanwhile; the server's figures before and after."""
    errors_before, closed_before = _scrape(url)
    rss_before = rss_bytes(pid)
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    attacker = multiprocessing.get_context("spawn").Process(target=run_attack, args=(plan, theirs),
                                                            name=f"attack-{plan.kind}")
    attacker.start()
    theirs.close()
    ours.recv()  # started
    with _RssPeak(pid) as rss:
        time.sleep(RAMP_S)
        server_cpu, attacker_cpu, started = process_tree_cpu_s(pid), process_tree_cpu_s(attacker.pid), time.time()
        normal = _normal_clients(url, requests, plan.seconds - RAMP_S)
        elapsed = time.time() - started
        cores = {"server": (process_tree_cpu_s(pid) - server_cpu) / elapsed,
                 "attacker": (process_tree_cpu_s(attacker.pid) - attacker_cpu) / elapsed}
        report = ours.recv() if ours.poll(plan.limit_s + 60) else {"error": "the attacker did not report"}
    attacker.join(30)
    time.sleep(1.0)  # the connections the attack left are closed by now; let the process settle
    errors_after, closed_after = _scrape(url)
    return {"normal": normal, "report": report, "cores": cores, "rss_before": rss_before, "rss_peak": rss.peak,
            "rss_after": rss_bytes(pid), "server_5xx": errors_after - errors_before,
            "closed_by_reason": {reason: closed_after.get(reason, 0.0) - closed_before.get(reason, 0.0)
                                 for reason in closed_after if closed_after[reason] != closed_before.get(reason, 0.0)}}


def _row(kind: str, result: dict[str, Any], unloaded: dict[str, Any], plan: AttackPlan) -> dict[str, Any]:
    report = result["report"]
    lifetimes = report.get("lifetimes_s", [])
    longest = max(lifetimes, default=0.0)
    closed_in_time = not report.get("error") and report.get("still_open", 1) == 0 and \
        longest <= plan.limit_s + SLACK_S
    throughput = result["normal"]["images_per_s"] / unloaded["images_per_s"]
    p99 = result["normal"]["latency"]["p99_ms"] / unloaded["latency"]["p99_ms"]
    rss = result["rss_after"] / result["rss_before"]
    targets = {"throughput": throughput >= 0.8, "p99": p99 <= 3.0, "closed": closed_in_time, "rss": rss <= 1.10,
               "no 5xx": result["server_5xx"] == 0}
    return {"attack": kind, "hostile connections": report.get("opened", 0), "limit s": plan.limit_s,
            "longest s": longest, "still open": report.get("still_open", 0), "x throughput": throughput,
            "x p99": p99, "server cores": result["cores"]["server"], "attacker cores": result["cores"]["attacker"],
            "peak RSS MiB": result["rss_peak"] / 2**20, "RSS after/before": rss,
            "server 5xx": result["server_5xx"], "met": all(targets.values()),
            "missed": [name for name, met in targets.items() if not met]}


def run(model: str, repository: Path, seconds: float, attacks: list[str]) -> dict[str, Any]:
    """Every attack in turn against one server; returns the figures, the rows and the targets."""
    settings = Settings(**BENCH_SETTINGS)  # type: ignore[arg-type]
    sizes, limits = attack_sizes(settings), attack_limits(settings)
    payloads = photo_payloads(32) if model == ENGINE_BOUND_MODEL else jpeg_payloads(32, 256)
    with serve("labelserve", repository, model, **BENCH_SETTINGS) as server:
        requests = [multipart_request(server.url, "/predict", f"image{i}.jpg", p) for i, p in enumerate(payloads)]
        _normal_clients(server.url, requests, 2.0)  # warm-up
        unloaded = _unloaded(server.url, requests, seconds, server.pid)
        print(f"unloaded: {unloaded['images_per_s']:.1f} img/s, p99 {unloaded['latency']['p99_ms']:.1f} ms",
              flush=True)
        results, rows = {}, []
        for kind in attacks:
            plan = AttackPlan(kind, server.url, sizes[kind], RAMP_S + seconds, limits[kind], requests[0])
            print(f"{kind}: {plan.connections} connections for {plan.seconds:.0f} s ...", flush=True)
            results[kind] = _attack(plan, server.url, requests, server.pid)
            rows.append(_row(kind, results[kind], unloaded, plan))
            print(format_table(rows[-1:], list(rows[-1])), flush=True)
        unloaded_after = _unloaded(server.url, requests, seconds, server.pid)
    return {"model": model, "concurrency": CONCURRENCY, "seconds": seconds, "ramp_s": RAMP_S,
            "settings": {**BENCH_SETTINGS, **{name: getattr(settings, name) for name in (
                "header_timeout_s", "body_stall_timeout_s", "body_min_rate", "body_grace_s", "send_timeout_s",
                "max_header_bytes", "max_header_fields", "max_connections", "max_uploads", "upload_buffer_bytes",
                "in_flight_limit")}},
            "sizes": sizes, "limits": limits, "sweep_s": SWEEP_S, "slack_s": SLACK_S,
            "unloaded": unloaded, "unloaded_after": unloaded_after,
            "attacks": results,
            "rows": rows, "all_met": all(row["met"] for row in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per attack (after a 3 s ramp)")
    parser.add_argument("--attacks", nargs="+", choices=ATTACKS, default=list(ATTACKS))
    parser.add_argument("--out", type=Path, help="JSON path (default: bench/results/hostile-<time>.json)")
    args = parser.parse_args()

    ensure_model(args.repository, args.model)
    result = run(args.model, args.repository, args.seconds, args.attacks)
    columns = [c for c in result["rows"][0] if c != "missed"]
    print()
    print(format_table(result["rows"], columns))
    print(f"\nunloaded {result['unloaded']['images_per_s']:.1f} img/s before, "
          f"{result['unloaded_after']['images_per_s']:.1f} after; every target met: {result['all_met']}")
    path = write_results("hostile", result, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""Closed-loop HTTP load against a labelserve server, light enough to share a 2-core machine with it, and the CPU
time the server spends meanwhile. `labelserve tune` and the benchmarks (bench/) measure with it.

On a 2-core machine the load client shares the CPU with the server it measures: httpx building a multipart body per
request took most of a core and so capped the server's figure. Here each multipart request is encoded once, up
front, and a connection only writes those bytes and reads back a `Content-Length` response. It speaks just enough
HTTP for labelserve (no chunked responses, no redirects); anything else raises `ProtocolError`. Standard library
only, so it runs wherever the service does.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Connection", "ProtocolError", "Response", "batch_totals", "closed_loop", "multipart_request",
           "percentiles_ms", "process_tree_cpu_s", "run_level"]

_BATCH_SUM = re.compile(r"^labelserve_batch_size_sum\{[^}]*\}\s+([0-9.e+]+)$", re.MULTILINE)
_BATCH_COUNT = re.compile(r"^labelserve_batch_size_count\{[^}]*\}\s+([0-9.e+]+)$", re.MULTILINE)
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ProtocolError(Exception):
    """The server answered something this client does not parse."""


@dataclass(frozen=True)
class Response:
    """Status code and body of one answer."""

    status: int
    body: bytes


def multipart_request(url: str, path: str, filename: str, payload: bytes, fields: dict[str, str] | None = None,
                      content_type: str = "image/jpeg") -> bytes:
    """A complete `POST path` request with `payload` as the multipart field `files`, ready to write."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in (fields or {}).items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{filename}"\r\n'
                 f"Content-Type: {content_type}\r\n\r\n".encode() + payload + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    host = urlsplit(url).netloc
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n").encode()
    return head + body


class Connection:
    """One keep-alive connection; requests on it run one after another."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"only http://host:port URLs are supported, got {url}")
        self._host, self._port = parts.hostname, parts.port or 80
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def send(self, request: bytes) -> Response:
        """Write a prepared request and read its response, reconnecting if the server closed the connection."""
        if self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        assert self._reader is not None
        self._writer.write(request)
        await self._writer.drain()
        status_line = await self._reader.readline()
        if not status_line:
            await self.close()
            raise ProtocolError("server closed the connection without answering")
        status = int(status_line.split(b" ", 2)[1])
        length, keep_alive = None, True
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            key = name.strip().lower()
            if key == b"content-length":
                length = int(value)
            elif key == b"connection" and value.strip().lower() == b"close":
                keep_alive = False
        if length is None:
            raise ProtocolError(f"response {status} has no Content-Length")
        body = await self._reader.readexactly(length)
        if not keep_alive:
            await self.close()
        return Response(status=status, body=body)

    async def close(self) -> None:
        """Close the socket (a later `send` reconnects)."""
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = None


def percentiles_ms(latencies_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99 and mean of latencies given in seconds, in milliseconds (NaN when there are none)."""
    if not latencies_s:
        return {"p50_ms": math.nan, "p90_ms": math.nan, "p99_ms": math.nan, "mean_ms": math.nan}
    ordered = sorted(latencies_s)

    def at(fraction: float) -> float:  # linear interpolation between closest ranks, as numpy.percentile does
        position = fraction * (len(ordered) - 1)
        low = math.floor(position)
        high = min(low + 1, len(ordered) - 1)
        return (ordered[low] + (ordered[high] - ordered[low]) * (position - low)) * 1000.0

    return {"p50_ms": at(0.50), "p90_ms": at(0.90), "p99_ms": at(0.99),
            "mean_ms": sum(ordered) / len(ordered) * 1000.0}


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def process_tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads and its live child processes (worker processes)."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime
        pending.extend(_children(current))
    return total


def batch_totals(url: str) -> tuple[float, float]:
    """Images and batches the server has run, from its /metrics (NaN for a server without them)."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
            text = response.read().decode()
    except urllib.error.HTTPError:
        return math.nan, math.nan
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


async def closed_loop(url: str, requests: list[bytes], concurrency: int, seconds: float, latencies: list[float],
                      statuses: Counter) -> float:
    """`concurrency` clients posting `requests` (cycled) back to back for `seconds`; each 200's latency is appended to
    `latencies` and every answer counted in `statuses` (by status, or by the exception of a request without one).
    Returns the seconds it took."""
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(_client_loop(url, requests, i * 7, deadline, latencies, statuses)
                           for i in range(concurrency)))
    return time.perf_counter() - started


def run_level(url: str, concurrency: int, seconds: float, payloads: list[bytes], model: str | None = None,
              server_pid: int | None = None) -> dict[str, Any]:
    """One closed-loop run at a fixed concurrency: `concurrency` clients, one image per request, no think time, after
    a short warm-up. Mean batch size from the server's /metrics; with `server_pid`, the server's CPU seconds (all
    threads and worker processes) over the measured window per answered image."""
    fields = {"model": model} if model else None
    requests = [multipart_request(url, "/predict", f"image{i}.jpg", p, fields) for i, p in enumerate(payloads)]
    asyncio.run(closed_loop(url, requests, concurrency, min(2.0, seconds / 5), [], Counter()))  # warm-up
    batch_sum0, batch_count0 = batch_totals(url)
    cpu0 = process_tree_cpu_s(server_pid) if server_pid else 0.0
    latencies: list[float] = []
    statuses: Counter = Counter()
    elapsed = asyncio.run(closed_loop(url, requests, concurrency, seconds, latencies, statuses))
    cpu1 = process_tree_cpu_s(server_pid) if server_pid else 0.0
    batch_sum1, batch_count1 = batch_totals(url)
    batches = batch_count1 - batch_count0
    ok = statuses.get(200, 0)
    return {
        "concurrency": concurrency,
        "seconds": elapsed,
        "ok": ok,
        "errors": {str(k): v for k, v in statuses.items() if k != 200},
        "images_per_s": ok / elapsed,
        "latency": percentiles_ms(latencies),
        "mean_batch_size": (batch_sum1 - batch_sum0) / batches if batches else math.nan,
        "server_cpu_s_per_image": (cpu1 - cpu0) / ok if server_pid and ok else math.nan,
        "server_cores": (cpu1 - cpu0) / elapsed if server_pid else math.nan,
    }

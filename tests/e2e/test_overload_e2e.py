"""Overload on 127.0.0.1, bounded in time and count: far more concurrent requests than the queue holds. Every
answer is a success or a clean 503 (queue full) or 504; the queue never grows past its bound;
and the server serves normally afterwards."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.lean_http import Connection, multipart_request
from labelserve.local_server import start_server

pytestmark = pytest.mark.e2e

QUEUE_BOUND = 4
CLIENTS = 48
SECONDS = 4.0


async def _hammer(url: str, requests: list[bytes], depths: list[float],
                  metric: Callable[..., float]) -> tuple[Counter[int], Counter[str]]:
    """`CLIENTS` closed-loop clients for `SECONDS`, sampling the queue depth meanwhile; (statuses, error codes)."""
    statuses: Counter[int] = Counter()
    codes: Counter[str] = Counter()
    deadline = asyncio.get_running_loop().time() + SECONDS

    async def client(offset: int) -> None:
        connection = Connection(url)
        index = offset
        while asyncio.get_running_loop().time() < deadline:
            response = await connection.send(requests[index % len(requests)])
            index += 1
            statuses[response.status] += 1
            if response.status != 200:
                codes[json.loads(response.body)["code"]] += 1
        await connection.close()

    async def watch_queue() -> None:
        while asyncio.get_running_loop().time() < deadline:
            depths.append(await asyncio.to_thread(metric, "labelserve_queue_depth", model="tiny", version="1"))
            await asyncio.sleep(0.05)

    await asyncio.gather(watch_queue(), *(client(i) for i in range(CLIENTS)))
    return statuses, codes


def test_overload_is_refused_cleanly_and_the_queue_stays_bounded(model_repository: Path, tmp_path: Path,
                                                                  val_jpegs: list[tuple[str, bytes]]) -> None:
    server = start_server(model_repository, tmp_path, max_queue_size=str(QUEUE_BOUND), max_batch_size="2",
                          max_queue_delay_ms="20", request_timeout_s="2", repository_poll_s="0")
    try:
        requests = [multipart_request(server.url, "/predict", name, data) for name, data in val_jpegs]
        depths: list[float] = []
        statuses, codes = asyncio.run(_hammer(server.url, requests, depths, server.metric))
        rejected = server.metric("labelserve_rejections_total", model="tiny", version="1", reason="queue_full")
        after = asyncio.run(Connection(server.url).send(requests[0]))
    finally:
        server.stop()
    assert set(statuses) <= {200, 503, 504}, statuses
    assert statuses[200] > 0 and statuses[503] > 0, statuses
    assert set(codes) <= {"queue_full", "deadline_exceeded"}, codes
    assert rejected == codes["queue_full"]
    assert depths and max(depths) <= QUEUE_BOUND
    assert after.status == 200

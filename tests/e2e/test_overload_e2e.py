"""Overload on 127.0.0.1, bounded in time and count: far more concurrent requests than the server admits. Every
request gets an HTTP answer (no reset, no closed connection), and it is a success or a clean 503 (refused at the
door, or queue full) or 504; the queue never grows past its bound; no admitted request is answered long after its
deadline; the server serves normally afterwards. A slow upload holds an upload slot, never a compute slot; refusals
at the upload door happen before the body is read; a body not in by the deadline is the client's 408."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from labelserve_tools.loadgen import Connection, ProtocolError, multipart_request
from labelserve_tools.local_server import start_server
from tests.http_testing import open_socket, read_response

pytestmark = pytest.mark.e2e

QUEUE_BOUND = 4
CLIENTS = 48
SECONDS = 4.0
DEADLINE_S = 2.0
MARGIN_S = 1.0  # generous for a shared 2-core machine; before the door and the arrival-based deadline: +1-1.5 s


async def _hammer(url: str, requests: list[bytes], depths: list[float],
                  metric: Callable[..., float]) -> tuple[Counter[int | str], Counter[str]]:
    """`CLIENTS` closed-loop clients for `SECONDS`, sampling the queue depth meanwhile; (statuses, error codes).
    A request without an HTTP answer counts as the exception's name."""
    statuses: Counter[int | str] = Counter()
    codes: Counter[str] = Counter()
    deadline = asyncio.get_running_loop().time() + SECONDS

    async def client(offset: int) -> None:
        connection = Connection(url)
        index = offset
        while asyncio.get_running_loop().time() < deadline:
            try:
                response = await connection.send(requests[index % len(requests)])
            except (OSError, ProtocolError, asyncio.IncompleteReadError) as exc:
                statuses[type(exc).__name__] += 1
                await connection.close()
                continue
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


def _logged_durations(log: str) -> dict[int, list[float]]:
    """Server-side durations (s) of /predict answers by status, from the JSON access log."""
    durations: dict[int, list[float]] = {}
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("route") == "/predict" and "duration_ms" in entry:
            durations.setdefault(entry["status"], []).append(entry["duration_ms"] / 1000.0)
    return durations


def test_overload_is_refused_cleanly_and_the_queue_stays_bounded(model_repository: Path, tmp_path: Path,
                                                                  val_jpegs: list[tuple[str, bytes]]) -> None:
    server = start_server(model_repository, tmp_path, max_queue_size=str(QUEUE_BOUND), max_batch_size="2",
                          max_queue_delay_ms="20", request_timeout_s=str(DEADLINE_S), repository_poll_s="0",
                          admission_wait_s="0")
    with server:
        requests = [multipart_request(server.url, "/predict", name, data) for name, data in val_jpegs]
        depths: list[float] = []
        statuses, codes = asyncio.run(_hammer(server.url, requests, depths, server.metric))
        queue_full = server.metric("labelserve_rejections_total", model="tiny", version="1", reason="queue_full")
        at_the_door = server.metric("labelserve_admission_rejections_total")
        after = asyncio.run(Connection(server.url).send(requests[0]))
        server.stop()
    assert set(statuses) <= {200, 503, 504}, statuses  # an exception name here is a request without an answer
    assert statuses[200] > 0 and statuses[503] > 0, statuses
    assert set(codes) <= {"server_busy", "queue_full", "deadline_exceeded"}, codes
    assert at_the_door == codes["server_busy"] > 0 and queue_full == codes["queue_full"]
    assert depths and max(depths) <= QUEUE_BOUND
    assert after.status == 200
    durations = _logged_durations(server.log())
    assert max(durations[200]) <= DEADLINE_S + MARGIN_S, max(durations[200])
    assert max(durations.get(504, [0.0])) <= DEADLINE_S + MARGIN_S


def test_a_request_over_the_upload_limit_is_refused_before_its_body_and_the_connection_stays_usable(
        model_repository: Path, tmp_path: Path, val_jpegs: list[tuple[str, bytes]]) -> None:
    server = start_server(model_repository, tmp_path, max_uploads="1", repository_poll_s="0", admission_wait_s="0")
    with server:
        request = multipart_request(server.url, "/predict", *val_jpegs[0])
        head_end = request.index(b"\r\n\r\n") + 4
        holder = open_socket(server.url)
        holder.sendall(request[:head_end + 10])  # uploading, now waiting for the rest of its body
        time.sleep(0.5)
        refused = open_socket(server.url)
        refused.sendall(request[:head_end])  # headers only: the answer must not wait for a body
        status, headers, body = read_response(refused)
        assert (status, json.loads(body)["code"], headers["retry-after"]) == (503, "server_busy", "1")
        assert "LABELSERVE_MAX_UPLOADS" in json.loads(body)["error"]
        holder.sendall(request[head_end + 10:])
        assert read_response(holder)[0] == 200
        refused.sendall(request[head_end:])  # the refused request's body is discarded; the connection lives on
        refused.sendall(request)
        assert read_response(refused)[0] == 200
        assert server.metric("labelserve_admission_rejections_total") == 1
        holder.close()
        refused.close()
        server.stop()


def test_a_slow_upload_holds_no_compute_slot(model_repository: Path, tmp_path: Path,
                                             val_jpegs: list[tuple[str, bytes]]) -> None:
    """With one compute slot, a request whose body trickles in does not keep a ready request from computing."""
    server = start_server(model_repository, tmp_path, max_in_flight="1", repository_poll_s="0", admission_wait_s="0")
    with server:
        request = multipart_request(server.url, "/predict", *val_jpegs[0])
        head_end = request.index(b"\r\n\r\n") + 4
        slow = open_socket(server.url)
        slow.sendall(request[:head_end + 10])
        time.sleep(0.3)
        ready = open_socket(server.url)
        for _ in range(3):
            ready.sendall(request)
            assert read_response(ready)[0] == 200
        slow.sendall(request[head_end + 10:])
        assert read_response(slow)[0] == 200
        assert server.metric("labelserve_admission_rejections_total") == 0
        slow.close()
        ready.close()
        server.stop()


def test_a_request_over_the_limit_waits_at_the_door_for_a_slot_then_is_refused(
        model_repository: Path, tmp_path: Path, val_jpegs: list[tuple[str, bytes]]) -> None:
    server = start_server(model_repository, tmp_path, max_uploads="1", repository_poll_s="0",
                          admission_wait_s="0.5")
    with server:
        request = multipart_request(server.url, "/predict", *val_jpegs[0])
        head_end = request.index(b"\r\n\r\n") + 4
        holder = open_socket(server.url)
        holder.sendall(request[:head_end + 10])  # uploading, now waiting for the rest of its body
        time.sleep(0.3)
        waiting = open_socket(server.url)
        waiting.sendall(request)  # whole: let in once the holder's body is read, if that is within the wait
        time.sleep(0.1)
        holder.sendall(request[head_end + 10:])
        assert read_response(holder)[0] == 200
        assert read_response(waiting)[0] == 200
        assert server.metric("labelserve_admission_rejections_total") == 0

        holder.sendall(request[:head_end + 10])  # the upload slot is taken again, and held past the wait
        time.sleep(0.3)
        started = time.monotonic()
        waiting.sendall(request[:head_end])
        status, _, body = read_response(waiting)
        waited = time.monotonic() - started
        assert (status, json.loads(body)["code"]) == (503, "server_busy")
        assert waited >= 0.5, waited
        assert "after waiting 0.5 s" in json.loads(body)["error"]
        assert server.metric("labelserve_admission_rejections_total") == 1
        holder.sendall(request[head_end + 10:])
        assert read_response(holder)[0] == 200
        holder.close()
        waiting.close()
        server.stop()


def test_a_body_not_in_by_the_deadline_is_the_clients_408(model_repository: Path, tmp_path: Path,
                                                          val_jpegs: list[tuple[str, bytes]]) -> None:
    """The deadline counts the upload; an upload that misses it is the client's fault (408), not a server 504."""
    server = start_server(model_repository, tmp_path, request_timeout_s="1", repository_poll_s="0")
    with server:
        request = multipart_request(server.url, "/predict", *val_jpegs[0])
        slow = open_socket(server.url)
        started = time.monotonic()
        slow.sendall(request[:len(request) // 2])  # the other half never comes in time
        status, _, body = read_response(slow)
        waited = time.monotonic() - started
        assert (status, json.loads(body)["code"]) == (408, "request_timeout")
        assert 1.0 <= waited <= 1.0 + MARGIN_S, waited
        assert server.metric("labelserve_requests_total", route="/predict", status="408") == 1
        slow.close()
        server.stop()


def test_an_idle_connection_outlives_uvicorns_five_seconds(model_repository: Path, tmp_path: Path,
                                                           val_jpegs: list[tuple[str, bytes]]) -> None:
    """A client that takes 6 s to send its next request (a busy client under overload) still gets an answer on the
    same connection: with uvicorn's default 5 s keep-alive it got a reset instead."""
    server = start_server(model_repository, tmp_path, repository_poll_s="0")
    with server:
        request = multipart_request(server.url, "/predict", *val_jpegs[0])
        client = open_socket(server.url)
        client.sendall(request)
        assert read_response(client)[0] == 200
        time.sleep(6.0)
        client.sendall(request)
        assert read_response(client)[0] == 200
        client.close()
        server.stop()

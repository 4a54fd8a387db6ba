"""Hostile clients against a real server: every phase of a connection has a time limit, the request head has a size
limit, connections have a cap that idle sockets cannot fill, every error is JSON with a code, and what a client does
wrong is never counted as the server's 5xx nor logged as a traceback.

The server runs with short limits (1-2 s) so that each behaviour shows within seconds; the sweep that enforces them
runs every 0.5 s, which the margins allow for, with room for a loaded 2-core machine.
"""

from __future__ import annotations

import contextlib
import json
import re
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2e_support import wait_for

from labelserve_tools.loadgen import multipart_request
from labelserve_tools.local_server import ServerProcess, start_server
from tests.http_testing import open_socket, read_response

pytestmark = pytest.mark.e2e

LIMITS = {"header_timeout_s": "1", "body_stall_timeout_s": "1.5", "body_grace_s": "1", "body_min_rate": "2000",
          "keep_alive_s": "2", "send_timeout_s": "1", "max_header_bytes": "4096", "max_header_fields": "20",
          "repository_poll_s": "0"}
SWEEP_MARGIN_S = 1.5  # one sweep (0.5 s) plus scheduling on a loaded machine


@pytest.fixture(scope="module")
def guarded(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    running = start_server(model_repository, tmp_path_factory.mktemp("hostile"), **LIMITS)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def predict_request(guarded: ServerProcess, val_jpegs: list[tuple[str, bytes]]) -> bytes:
    return multipart_request(guarded.url, "/predict", *val_jpegs[0])


def _closed_within(sock: socket.socket, seconds: float) -> float:
    """Seconds until the server closes `sock` (reading and dropping what it sends); fails after `seconds`."""
    started = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"still open after {seconds} s") from None
    return time.monotonic() - started


def _json_error(sock: socket.socket) -> tuple[int, str, str]:
    status, headers, body = read_response(sock)
    document = json.loads(body)
    assert headers["content-type"] == "application/json" and headers["x-error-code"] == document["code"]
    return status, document["code"], document["error"]


def _closes(server: ServerProcess, reason: str) -> float:
    return server.metric("labelserve_connections_closed_total", reason=reason)


def _server_errors(server: ServerProcess) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return sum(float(value) for value in re.findall(r'^labelserve_requests_total\{[^}]*status="5\d\d"[^}]*\} (\S+)',
                                                    text, re.MULTILINE))


def test_a_head_that_never_ends_gets_408_at_its_timeout(guarded: ServerProcess) -> None:
    before = _closes(guarded, "header_timeout")
    sock = open_socket(guarded.url)
    started = time.monotonic()
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
    for _ in range(20):  # a header byte every 0.2 s: progress, but never the end of the head
        try:
            sock.sendall(b"X")
        except OSError:
            break
        time.sleep(0.2)
        if _has_data(sock):
            break
    status, code, error = _json_error(sock)
    assert (status, code) == (408, "request_timeout") and "LABELSERVE_HEADER_TIMEOUT_S" in error
    assert 1.0 <= time.monotonic() - started <= 1.0 + SWEEP_MARGIN_S
    _closed_within(sock, 5)
    assert _closes(guarded, "header_timeout") == before + 1


def _has_data(sock: socket.socket) -> bool:
    import select

    return bool(select.select([sock], [], [], 0)[0])


def test_a_silent_connection_is_closed_after_the_keep_alive_time(guarded: ServerProcess,
                                                                  predict_request: bytes) -> None:
    silent = open_socket(guarded.url)  # never sends a byte
    assert _closed_within(silent, 2 + SWEEP_MARGIN_S + 2) >= 2.0 - 0.1
    used = open_socket(guarded.url)  # and between two requests, as before
    used.sendall(predict_request)
    assert read_response(used)[0] == 200
    assert _closed_within(used, 2 + SWEEP_MARGIN_S + 2) >= 2.0 - 0.1


def test_a_body_at_one_byte_a_second_gets_408_after_the_grace(guarded: ServerProcess, predict_request: bytes) -> None:
    before_408 = guarded.metric("labelserve_requests_total", route="/predict", status="408")
    head_end = predict_request.index(b"\r\n\r\n") + 4
    sock = open_socket(guarded.url)
    sock.sendall(predict_request[:head_end])
    started = time.monotonic()
    for byte in predict_request[head_end:head_end + 10]:
        sock.sendall(bytes([byte]))
        if _has_data(sock):
            break
        time.sleep(0.5)
    status, code, error = _json_error(sock)
    assert (status, code) == (408, "request_timeout") and "LABELSERVE_BODY_MIN_RATE" in error
    assert 1.0 <= time.monotonic() - started <= 1.0 + SWEEP_MARGIN_S
    _closed_within(sock, 5)
    # the app, which was reading the body, reports the same 408 (route known), not a 500
    assert guarded.metric("labelserve_requests_total", route="/predict", status="408") == before_408 + 1


def test_a_stalled_body_gets_408_after_the_stall_timeout(guarded: ServerProcess, predict_request: bytes) -> None:
    sock = open_socket(guarded.url)
    sock.sendall(predict_request[:len(predict_request) // 2])  # fast, then nothing
    started = time.monotonic()
    status, code, error = _json_error(sock)
    assert (status, code) == (408, "request_timeout")
    assert "LABELSERVE_BODY_STALL_TIMEOUT_S" in error or "LABELSERVE_BODY_MIN_RATE" in error
    assert time.monotonic() - started <= 1.5 + SWEEP_MARGIN_S


def test_a_client_that_aborts_mid_body_is_499_one_info_line_and_no_traceback(guarded: ServerProcess,
                                                                             predict_request: bytes) -> None:
    before = guarded.metric("labelserve_requests_total", route="/predict", status="499")
    errors_before = _server_errors(guarded)
    sock = open_socket(guarded.url)
    sock.sendall(predict_request[:len(predict_request) // 2])
    time.sleep(0.3)
    sock.close()
    wait_for(lambda: guarded.metric("labelserve_requests_total", route="/predict", status="499") == before + 1,
             timeout_s=10)
    assert _server_errors(guarded) == errors_before
    lines = [r for r in guarded.log_records() if r.get("status") == 499]
    assert lines and all(r["level"] == "INFO" for r in lines)


@pytest.mark.parametrize(("raw", "fragment"), [
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", "Content-Length"),
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", "chunk"),
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\nhi\r\n", "chunk"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n", "header"),
    (b"GET /healthz HTTP/1.1\nHost: x\n\n", ""),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", ""),  # a TLS ClientHello on the plain port
    (b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", ""),
])
def test_bytes_that_are_not_http_get_a_json_400_never_a_5xx(guarded: ServerProcess, raw: bytes,
                                                            fragment: str) -> None:
    errors_before = _server_errors(guarded)
    sock = open_socket(guarded.url)
    sock.sendall(raw)
    status, code, error = _json_error(sock)
    assert (status, code) == (400, "malformed_request") and fragment.lower() in error.lower()
    _closed_within(sock, 5)
    assert _server_errors(guarded) == errors_before
    assert httpx.get(f"{guarded.url}/healthz", timeout=10).status_code == 200


def test_a_chunked_body_broken_mid_way_is_the_apps_400_not_500(guarded: ServerProcess,
                                                               predict_request: bytes) -> None:
    """The app was already reading the body when the parser failed: it reports the 400 the client got."""
    head, _, body = predict_request.partition(b"\r\n\r\n")
    head = re.sub(rb"\r\nContent-Length: \d+", b"\r\nTransfer-Encoding: chunked", head, flags=re.IGNORECASE)
    before = guarded.metric("labelserve_requests_total", route="/predict", status="400")
    sock = open_socket(guarded.url)
    sock.sendall(head + b"\r\n\r\n" + b"%x\r\n" % 100 + body[:100] + b"\r\n")
    time.sleep(0.3)
    sock.sendall(b"zz\r\n")
    assert _json_error(sock)[:2] == (400, "malformed_request")
    wait_for(lambda: guarded.metric("labelserve_requests_total", route="/predict", status="400") == before + 1,
             timeout_s=10)
    assert not [r for r in guarded.log_records() if r.get("level") == "ERROR" or "Traceback" in json.dumps(r)]


def test_head_limits_answer_431_and_414(guarded: ServerProcess) -> None:
    many = b"".join(b"X-%d: v\r\n" % i for i in range(21))
    cases = [
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n", 431, "LABELSERVE_MAX_HEADER_FIELDS"),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n", 431,
         "LABELSERVE_MAX_HEADER_BYTES"),
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "LABELSERVE_MAX_HEADER_BYTES"),
    ]
    for raw, expected, setting in cases:
        sock = open_socket(guarded.url)
        sock.sendall(raw)
        status, _code, error = _json_error(sock)
        assert status == expected and setting in error, (raw[:40], status, error)


def test_an_endless_header_is_cut_off_at_the_limit_not_buffered(guarded: ServerProcess) -> None:
    """An 8 MB header sent in pieces is answered 431 once past the limit; the server never holds the rest.

    The client's send buffer is pinned at 64 KiB: left to autotune on loopback it grew to megabytes while a busy
    server had not yet answered, and `sent` counted the kernel's buffering rather than what the server read."""
    sock = open_socket(guarded.url)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bomb: ")
    sent = 0
    try:
        while sent < 8 << 20 and not _has_data(sock):
            sock.sendall(b"a" * 1024)
            sent += 1024
    except OSError:  # the server half-closed or reset after answering
        pass
    status, code, _error = _json_error(sock)
    assert (status, code) == (431, "request_header_fields_too_large")
    assert sent < 1 << 20, f"{sent} bytes were taken before the 431"


def test_an_answer_the_client_never_reads_is_dropped_after_the_send_timeout(guarded: ServerProcess) -> None:
    """Pipelined requests whose answers are never read fill the socket; the server aborts the connection instead of
    holding the request (and what it holds) for ever."""
    before = _closes(guarded, "send_timeout")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    host, port = guarded.url.removeprefix("http://").split(":")
    sock.connect((host, int(port)))
    request = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n"
    with contextlib.suppress(OSError):
        sock.sendall(request * 2000)
    wait_for(lambda: _closes(guarded, "send_timeout") == before + 1, timeout_s=20)
    sock.close()
    assert httpx.get(f"{guarded.url}/healthz", timeout=10).status_code == 200


def test_no_client_above_was_counted_as_a_server_error(guarded: ServerProcess) -> None:
    """Runs last in this module: whatever the clients above did, the server counted no 5xx and logged no error."""
    assert _server_errors(guarded) == 0
    assert not [r for r in guarded.log_records() if r.get("level") in ("ERROR", "CRITICAL")]


def test_at_the_cap_an_idle_connection_makes_room_and_busy_ones_mean_a_json_503(
        model_repository: Path, tmp_path: Path, predict_request: bytes) -> None:
    server = start_server(model_repository, tmp_path, max_connections="6", header_timeout_s="30",
                          repository_poll_s="0")
    with server:
        idle = [open_socket(server.url) for _ in range(6)]  # the cap, all idle (no byte sent)
        time.sleep(0.3)
        newcomer = open_socket(server.url)
        newcomer.sendall(predict_request)
        assert read_response(newcomer)[0] == 200  # the longest-idle connection made room for it
        assert sum(_is_closed(sock) for sock in idle) == 1
        busy = [open_socket(server.url) for _ in range(6)]  # room again: evicts idle ones, then are busy
        for sock in busy:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # a head under way: not idle
        time.sleep(0.3)
        refused = open_socket(server.url)
        status, code, error = _json_error(refused)
        assert (status, code) == (503, "too_many_connections") and "LABELSERVE_MAX_CONNECTIONS" in error
        for sock in (*idle, *busy, newcomer, refused):
            sock.close()
        time.sleep(0.3)  # room for the scrape below
        assert server.metric("labelserve_connections_closed_total", reason="refused") == 1
        assert server.metric("labelserve_connections_closed_total", reason="evicted") == 7  # 1 + the other 6 idle
        server.stop()


def _is_closed(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.setblocking(True)


def test_the_open_file_limit_is_raised_and_reported(model_repository: Path, tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard <= 512:
        pytest.skip(f"the hard open-file limit here is {hard}: nothing to raise to")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # inherited by the server
    try:
        server = start_server(model_repository, tmp_path, repository_poll_s="0")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    with server:
        limits = Path(f"/proc/{server.process.pid}/limits").read_text()
        assert re.search(rf"Max open files\s+{hard}\s+{hard}", limits), limits
        assert f"open-file limit {hard} (raised from 256)" in server.log()
        wait_for(lambda: server.metric("labelserve_file_descriptors", kind="limit") == hard, timeout_s=15)
        assert 0 < server.metric("labelserve_file_descriptors", kind="open") < hard
        server.stop()


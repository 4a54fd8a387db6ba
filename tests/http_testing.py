"""HTTP helpers shared by the tests that hold a request inside a running server (drain, shutdown) or speak raw
HTTP to it (overload, hostile clients)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx

from labelserve_tools.loadgen import multipart_request


def slow_post(url: str, image: tuple[str, bytes], pause_s: float) -> httpx.Response:
    """POST one image whose body arrives in two halves `pause_s` apart: the request is inside the server meanwhile."""
    name, data = image
    head, body = multipart_request(url, "/predict", name, data).split(b"\r\n\r\n", 1)
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])

    def halves() -> Iterator[bytes]:
        yield body[: len(body) // 2]
        time.sleep(pause_s)
        yield body[len(body) // 2:]

    return httpx.post(f"{url}/predict", content=halves(), timeout=60,
                      headers={k: headers[k] for k in ("Content-Type", "Content-Length")})


def open_socket(url: str, timeout_s: float = 30.0) -> socket.socket:
    """A plain TCP connection to the server at `url`, to write raw HTTP on."""
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=timeout_s)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of one HTTP/1.1 response with a Content-Length, read off `sock`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed without an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed inside the body: {body!r}"
        body += chunk
    return int(lines[0].split()[1]), headers, body

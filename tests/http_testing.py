"""HTTP helpers shared by the tests that hold a request inside a running server (drain, shutdown)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx

from labelserve.loadgen import multipart_request


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

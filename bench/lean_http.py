"""A deliberately small HTTP/1.1 keep-alive client for the load generator.

On a 2-core machine the load client shares the CPU with the server it measures: httpx building a multipart body per
request took most of a core and so capped the server's figure. Here each multipart request is encoded once, up
front, and a connection only writes those bytes and reads back a `Content-Length` response. It speaks just enough
HTTP for labelserve (no chunked responses, no redirects); anything else raises `ProtocolError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["Connection", "ProtocolError", "Response", "multipart_request"]


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

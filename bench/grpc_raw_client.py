"""A closed-loop gRPC load client light enough to share two cores with the server it measures: the gRPC analogue of
labelserve_tools.loadgen's prebuilt HTTP requests.

grpcio's own client spends about 0.2 ms of CPU per unary call (its Cython call objects and the poller thread that
wakes asyncio), about three times what loadgen spends per HTTP request; on a 2-core machine that time comes out of
the server's share, so a figure measured with it says more about the client than about the server. Here every call
is one HTTP/2 stream on one shared connection (as tritonclient.grpc uses one channel): the request's HEADERS block
and its length-prefixed message are encoded once, a call writes those frames under HTTP/2 flow control and waits
for the trailers. It speaks just enough HTTP/2 for unary gRPC over cleartext (settings, pings, window updates, reset
streams, GOAWAY); response headers are decoded with `hpack`, since the server's encoder uses HPACK's dynamic table.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from hpack import Decoder

__all__ = ["GrpcConnection", "GrpcError", "closed_loop_grpc", "grpc_message"]

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PING, _GOAWAY, _WINDOW_UPDATE, _CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
_END_STREAM, _ACK, _END_HEADERS, _PADDED, _PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
_SETTING_MAX_CONCURRENT_STREAMS, _SETTING_INITIAL_WINDOW_SIZE, _SETTING_MAX_FRAME_SIZE = 3, 4, 5
_MAX_WINDOW = 2**31 - 1
_STATUS_NAMES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
                 "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
                 "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")


class GrpcError(Exception):
    """The connection failed, or the server answered something this client does not parse."""


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + struct.pack(">I", stream) + payload


def _hpack_integer(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """RFC 7541 5.1: `value` with an N-bit prefix, the prefix's other bits from `first`."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out, value = [first | limit], value - limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    return bytes((*out, value))


def _literal(name: bytes, value: bytes) -> bytes:
    """A header as a literal never added to the dynamic table, so one block can be sent on every stream."""
    return b"\x00" + _hpack_integer(len(name), 7) + name + _hpack_integer(len(value), 7) + value


def grpc_message(serialized: bytes) -> bytes:
    """A serialized protobuf message as gRPC frames it: uncompressed flag, 4-byte big-endian length, the bytes."""
    return b"\x00" + struct.pack(">I", len(serialized)) + serialized


@dataclass
class _Stream:
    done: asyncio.Future[tuple[str, bytes]]
    send_window: int
    body: bytearray = field(default_factory=bytearray)


class GrpcConnection:
    """One HTTP/2 connection carrying concurrent unary calls, each a stream of prebuilt frames."""

    def __init__(self, target: str) -> None:
        self.host, _, port = target.rpartition(":")
        self.port = int(port)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None
        self._streams: dict[int, _Stream] = {}
        self._next_stream = 1
        self._send_window = 65535  # the connection's, from the server's WINDOW_UPDATEs
        self._initial_window = 65535  # each new stream's, from the server's SETTINGS
        self._max_frame = 16384
        self.max_streams = 100
        self.window_waits = 0  # times a call waited for the server's WINDOW_UPDATE
        self._window_opened = asyncio.Event()
        self._received = 0  # DATA bytes since our last connection WINDOW_UPDATE
        self._decoder = Decoder()
        self._failure: Exception | None = None
        self._settled: asyncio.Future[None] | None = None  # the server's first SETTINGS arrived
        self._handlers: dict[int, Callable[[int, int, bytes], None]] = {
            _DATA: self._on_data, _HEADERS: self._on_headers, _RST_STREAM: self._on_reset,
            _SETTINGS: self._on_settings, _PING: self._on_ping, _GOAWAY: self._on_goaway,
            _WINDOW_UPDATE: self._on_window_update, _CONTINUATION: self._on_continuation}

    async def open(self) -> None:
        """Connect, send the preface with our settings (no push, windows as large as allowed) and wait for the
        server's settings."""
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        settings = struct.pack(">HIHI", 2, 0, _SETTING_INITIAL_WINDOW_SIZE, _MAX_WINDOW)  # 2 = ENABLE_PUSH
        self._writer.write(_PREFACE + _frame(_SETTINGS, 0, 0, settings)
                           + _frame(_WINDOW_UPDATE, 0, 0, struct.pack(">I", _MAX_WINDOW - 65535)))
        self._settled = asyncio.get_running_loop().create_future()
        self._reading = asyncio.create_task(self._read_frames())
        await asyncio.wait_for(self._settled, 10)

    async def close(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            await asyncio.gather(self._reading, return_exceptions=True)
        if self._writer is not None:
            self._writer.close()
            await asyncio.gather(self._writer.wait_closed(), return_exceptions=True)

    def headers_block(self, method: str, timeout_s: float) -> bytes:
        """The HPACK block for a call to `method` (`/package.Service/Method`), encoded once for every call."""
        return (b"\x83\x86"  # :method POST, :scheme http (static table entries 3 and 6)
                + _literal(b":path", method.encode()) + _literal(b":authority", f"{self.host}:{self.port}".encode())
                + _literal(b"content-type", b"application/grpc") + _literal(b"te", b"trailers")
                + _literal(b"grpc-timeout", f"{max(1, int(timeout_s))}S".encode()))

    async def call(self, headers_block: bytes, message: bytes) -> tuple[str, bytes]:
        """One unary call: (the status's name, the response message's bytes without the gRPC prefix)."""
        if self._failure is not None:
            raise self._failure
        assert self._writer is not None
        stream_id, self._next_stream = self._next_stream, self._next_stream + 2
        stream = _Stream(asyncio.get_running_loop().create_future(), self._initial_window)
        self._streams[stream_id] = stream
        out = [_frame(_HEADERS, _END_HEADERS, stream_id, headers_block)]
        sent = 0
        while sent < len(message):
            chunk = min(len(message) - sent, self._max_frame, self._send_window, stream.send_window)
            if chunk <= 0:  # flow control: write what is ready, wait for the server's WINDOW_UPDATE
                self._writer.write(b"".join(out))
                out.clear()
                self._window_opened.clear()
                self.window_waits += 1
                await self._window_opened.wait()
                if self._failure is not None:
                    raise self._failure
                continue
            flags = _END_STREAM if sent + chunk == len(message) else 0
            out.append(_frame(_DATA, flags, stream_id, message[sent:sent + chunk]))
            sent += chunk
            self._send_window -= chunk
            stream.send_window -= chunk
        self._writer.write(b"".join(out))
        return await stream.done

    async def _read_frames(self) -> None:
        assert self._reader is not None and self._writer is not None
        try:
            while True:
                head = await self._reader.readexactly(9)
                length = int.from_bytes(head[:3], "big")
                kind, flags, stream_id = head[3], head[4], int.from_bytes(head[5:9], "big") & _MAX_WINDOW
                payload = await self._reader.readexactly(length) if length else b""
                self._on_frame(kind, flags, stream_id, payload)
        except (OSError, asyncio.IncompleteReadError, GrpcError) as exc:
            self._fail(exc if isinstance(exc, GrpcError) else GrpcError(f"connection lost: {exc!r}"))

    def _on_frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        handler = self._handlers.get(kind)
        if handler is not None:  # PRIORITY and unknown frame types are ignored, as RFC 9113 allows
            handler(flags, stream_id, payload)

    def _write(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(data)

    def _on_data(self, flags: int, stream_id: int, payload: bytes) -> None:
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.body += payload[1:len(payload) - payload[0]] if flags & _PADDED else payload
        self._received += len(payload)
        if self._received > 2**30:  # give back what we consumed of our (huge) connection window
            self._write(_frame(_WINDOW_UPDATE, 0, 0, struct.pack(">I", self._received)))
            self._received = 0

    def _on_reset(self, flags: int, stream_id: int, payload: bytes) -> None:
        self._finish(stream_id, f"RST_STREAM_{int.from_bytes(payload[:4], 'big')}")

    def _on_settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if flags & _ACK:
            return
        for offset in range(0, len(payload), 6):
            key, value = struct.unpack_from(">HI", payload, offset)
            if key == _SETTING_INITIAL_WINDOW_SIZE:
                for stream in self._streams.values():
                    stream.send_window += value - self._initial_window
                self._initial_window = value
            elif key == _SETTING_MAX_FRAME_SIZE:
                self._max_frame = value
            elif key == _SETTING_MAX_CONCURRENT_STREAMS:
                self.max_streams = value
        self._write(_frame(_SETTINGS, _ACK, 0))
        self._window_opened.set()
        if self._settled is not None and not self._settled.done():
            self._settled.set_result(None)

    def _on_ping(self, flags: int, stream_id: int, payload: bytes) -> None:
        if not flags & _ACK:
            self._write(_frame(_PING, _ACK, 0, payload))

    def _on_goaway(self, flags: int, stream_id: int, payload: bytes) -> None:
        raise GrpcError(f"the server sent GOAWAY (error code {int.from_bytes(payload[4:8], 'big')})")

    def _on_window_update(self, flags: int, stream_id: int, payload: bytes) -> None:
        increment = int.from_bytes(payload[:4], "big") & _MAX_WINDOW
        if stream_id == 0:
            self._send_window += increment
        elif (stream := self._streams.get(stream_id)) is not None:
            stream.send_window += increment
        self._window_opened.set()

    def _on_continuation(self, flags: int, stream_id: int, payload: bytes) -> None:
        raise GrpcError("CONTINUATION frames are not supported: the server's headers exceed one frame")

    def _on_headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if not flags & _END_HEADERS:
            self._on_continuation(flags, stream_id, payload)
        start, end = 0, len(payload)
        if flags & _PADDED:
            start, end = 1, len(payload) - payload[0]
        if flags & _PRIORITY:
            start += 5
        headers = dict(self._decoder.decode(payload[start:end], raw=True))  # every block, to keep HPACK's table
        if flags & _END_STREAM:  # trailers (or a trailers-only error answer)
            code = int(headers.get(b"grpc-status", b"2"))
            self._finish(stream_id, _STATUS_NAMES[code] if code < len(_STATUS_NAMES) else f"STATUS_{code}")

    def _finish(self, stream_id: int, status: str) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is not None and not stream.done.done():
            body = bytes(stream.body)
            if status == "OK" and (len(body) < 5 or body[0] or int.from_bytes(body[1:5], "big") != len(body) - 5):
                status = "MALFORMED_RESPONSE"
            stream.done.set_result((status, body[5:]))

    def _fail(self, error: Exception) -> None:
        self._failure = error
        if self._settled is not None and not self._settled.done():
            self._settled.set_exception(error)
        for stream in self._streams.values():
            if not stream.done.done():
                stream.done.set_exception(error)
        self._streams.clear()
        self._window_opened.set()


async def closed_loop_grpc(target: str, method: str, messages: list[bytes], concurrency: int, seconds: float,
                           latencies: list[float], statuses: Counter) -> float:
    """`concurrency` callers on one connection sending `messages` (serialized requests, cycled) back to back for
    `seconds`; each OK call's latency is appended to `latencies`, every answer counted in `statuses` (200 for OK,
    else the status's name). Returns the seconds it took.

    Raises:
        GrpcError: the connection was lost or refused (a benchmark cell without its server is not a figure).
        OSError: the server could not be reached.
    """
    connection = GrpcConnection(target)
    await connection.open()
    if concurrency > connection.max_streams:
        await connection.close()
        raise GrpcError(f"{concurrency} callers need as many streams; the server allows {connection.max_streams}")
    block = connection.headers_block(method, 60)
    framed = [grpc_message(message) for message in messages]
    started = time.perf_counter()
    deadline = started + seconds

    async def caller(index: int) -> None:
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            status, _ = await connection.call(block, framed[index % len(framed)])
            index += 1
            statuses[200 if status == "OK" else status] += 1
            if status == "OK":
                latencies.append(time.perf_counter() - sent)

    try:
        await asyncio.gather(*(caller(i * 7) for i in range(concurrency)))
    finally:
        await connection.close()
    return time.perf_counter() - started

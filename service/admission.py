"""Admission in two stages, each with its own budget: bodies in transit, then computation.

1. **Upload.** A request with a body takes one of `max_uploads` upload slots and has its whole body read here, with
   its bytes counted against `upload_buffer_bytes` (held until it is answered). Beyond `max_uploads` it waits at
   the door, body unread; a body that would pass the byte budget gets 503 `server_busy`. Reading is bounded by the
   request's deadline (408 `request_timeout`: a body that has not arrived is the client's doing), and by the HTTP
   layer's stall and minimum-rate limits (service.http), which fail a slow body within seconds.
2. **Compute.** Only then does an inference request take one of `max_in_flight` compute slots, and the app gets the
   body in one message.

Taking the compute slot at the headers, as this did before, let 512 clients sending their bodies at 1 byte/s hold
all 256 slots until their deadline, and every ready request got 503 meanwhile. Now a slow upload holds an upload
slot and the bytes it actually sent, nothing that computation needs (nginx in front of an app server does the same
with its request buffering). Memory held by bodies is at most `upload_buffer_bytes`, plus what the HTTP layer reads
ahead per connection (64 KiB).

A request that finds every slot of a stage taken waits at that stage's door, in arrival order, for up to
`LABELSERVE_ADMISSION_WAIT_S` (1 s) for a slot to free up, and is refused only then. Clients that do not honour
`Retry-After` come straight back after a refusal: refused at once, 128 such clients against 32 slots made ~2,900
refusals a second on the demo model, whose CPU (the server's and the clients' on the same cores) cut the answers
to a fifth of the server's throughput. The wait bounds the refusal rate to about one per waiting client per wait,
absorbs bursts shorter than the wait, and adds at most the wait to an admitted request's latency (its deadline still
counts from arrival, which is stamped here: `arrival_time`).

A client that leaves during its upload is reported as 499 `client_disconnected` (or as the 408/400 the HTTP layer
answered it with), never as a server error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import tracing
from service.errors import (
    RequestTimeoutError,
    ServerBusyError,
    ServiceError,
    client_fault,
    error_response,
)
from service.gate import ComputeGate, Slots

__all__ = ["AdmissionMiddleware", "arrival_time", "buffered_body"]

_ARRIVAL_KEY = "labelserve_arrival"
_BODY_KEY = "labelserve_body"
Authorize = Callable[[Scope], ServiceError | None]


def buffered_body(scope: Scope) -> bytes | None:
    """The body this middleware read for the request, if it did: the route takes it as is, without the copy that
    re-reading it through Starlette's stream makes (a 640x480 JPEG is 100-200 KB)."""
    body = scope.get("state", {}).get(_BODY_KEY)
    return body if isinstance(body, bytes) else None


def arrival_time(scope: Scope) -> float:
    """When the request's headers reached the server (`time.monotonic()`); now, for a request not seen at the door."""
    arrived = scope.get("state", {}).get(_ARRIVAL_KEY)
    return float(arrived) if arrived is not None else time.monotonic()


def _has_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if (name == b"content-length" and value.strip(b" 0")) or name == b"transfer-encoding":
            return True
    return False


class AdmissionMiddleware:
    """Reads every request body in full within its budget (upload stage), then lets at most `max_in_flight`
    inference requests compute at a time (compute stage); each stage's door waits up to `wait_s`, then 503."""

    def __init__(self, app: ASGIApp, inference: Callable[[Scope], bool], max_in_flight: int = 256,
                 max_uploads: int = 1024,
                 upload_buffer_bytes: int = 512 << 20, request_timeout_s: float = 30.0,
                 on_refused: Callable[[], None] = lambda: None, retry_after_s: int = 1, wait_s: float = 0.0,
                 authorize: Authorize | None = None, gate: ComputeGate | None = None) -> None:
        """`gate` is the server's compute gate, shared with the other protocols (default: one of `max_in_flight`
        slots of its own); `inference` tells the requests that cost model time (service.protocols)."""
        for name, value in (("max_uploads", max_uploads), ("upload_buffer_bytes", upload_buffer_bytes)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if wait_s < 0:
            raise ValueError(f"wait_s must be >= 0, got {wait_s}")
        self.app = app
        self.on_refused = on_refused
        self.request_timeout_s = request_timeout_s
        self.upload_buffer_bytes = upload_buffer_bytes
        self.buffered_bytes = 0
        self._authorize = authorize
        self._retry_after_s = retry_after_s
        self._compute = gate if gate is not None else ComputeGate(max_in_flight, wait_s, retry_after_s, on_refused)
        self._is_inference = inference
        self._uploads = Slots(max_uploads, wait_s)
        waited = f" after waiting {wait_s:g} s" if wait_s > 0 else ""
        # Rendered once: a refusal must cost as little as possible, since refused clients come straight back.
        self._busy_computing = error_response(self._compute.busy)
        self._busy_uploading = error_response(ServerBusyError(
            f"the server is receiving its limit of {max_uploads} request bodies (LABELSERVE_MAX_UPLOADS)"
            f"{waited}; retry after {retry_after_s} s", retry_after_s=retry_after_s))

    @property
    def in_flight(self) -> int:
        """Inference requests computing now."""
        return self._compute.in_flight

    @property
    def uploading(self) -> int:
        """Requests whose body is being read now."""
        return self._uploads.held

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stamp the arrival time; read the body within its budget; admit inference requests to compute."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})[_ARRIVAL_KEY] = time.monotonic()
        inference = self._is_inference(scope)
        if inference and self._authorize is not None and (denied := self._authorize(scope)) is not None:
            await error_response(denied)(scope, receive, send)  # before a byte of the body is read
            return
        if not _has_body(scope):
            await (self._compute_stage(scope, receive, send) if inference else self.app(scope, receive, send))
            return
        if not await self._uploads.acquire():
            # The body is left unread: the server discards it and the connection stays open for the next request.
            self.on_refused()
            await self._busy_uploading(scope, receive, send)
            return
        try:
            with tracing.span("body read"):
                body = await self._read_body(scope, receive)
        except ServiceError as error:
            await error_response(error)(scope, receive, send)
            return
        finally:
            self._uploads.release()
        scope["state"][_BODY_KEY] = body
        try:
            replay = _replay(body, receive)
            await (self._compute_stage(scope, replay, send) if inference else self.app(scope, replay, send))
        finally:
            self.buffered_bytes -= len(body)

    async def _compute_stage(self, scope: Scope, receive: Receive, send: Send) -> None:
        with tracing.span("admission wait"):
            admitted = await self._compute.acquire()
        if not admitted:  # the gate counts the refusal
            await self._busy_computing(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self._compute.release()

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        """The whole body, its bytes held against the budget (given back on failure; on success once answered).

        Raises:
            RequestTimeoutError: the body was not complete by the request's deadline (408).
            ServerBusyError: the bytes held by all bodies would pass `upload_buffer_bytes` (503).
            ServiceError: the client left, or the HTTP layer ended the request (`client_fault`).
        """
        chunks: list[bytes] = []
        size = 0
        remaining = arrival_time(scope) + self.request_timeout_s - time.monotonic()
        try:
            async with asyncio.timeout(max(0.0, remaining)):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise client_fault(scope)
                    chunk = message.get("body", b"")
                    if chunk:
                        self._hold(len(chunk))
                        size += len(chunk)
                        chunks.append(chunk)
                    if not message.get("more_body", False):
                        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        except TimeoutError:
            self.buffered_bytes -= size
            raise RequestTimeoutError(f"the request body was not complete within the request's deadline of "
                                      f"{self.request_timeout_s:g} s (LABELSERVE_REQUEST_TIMEOUT_S)") from None
        except BaseException:
            self.buffered_bytes -= size
            raise

    def _hold(self, size: int) -> None:
        if self.buffered_bytes + size > self.upload_buffer_bytes:
            raise ServerBusyError(f"request bodies already hold {self.buffered_bytes} of the "
                                  f"{self.upload_buffer_bytes} bytes the server buffers "
                                  f"(LABELSERVE_UPLOAD_BUFFER_BYTES); retry after {self._retry_after_s} s",
                                  retry_after_s=self._retry_after_s)
        self.buffered_bytes += size


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the app the body in one message, then passes on what the server sends (a disconnect)."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay

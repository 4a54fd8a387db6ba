"""uvicorn's httptools protocol with a time limit on every phase of a connection, a cap on the request head, and a
JSON answer for every request the app never sees.

uvicorn alone leaves a connection open for as long as its client trickles bytes: a head that never ends, a body at
1 byte/s, a socket that never sends a byte, an answer nobody reads. Each of those holds a descriptor, memory, and
(for a body) an admission slot. Here each connection is in one `Phase` with one deadline, enforced by the
`ConnectionTable`'s sweep:

- idle (before its first request or between two): closed after `keep_alive_s`;
- head arriving: 408 `request_timeout` unless complete `header_timeout_s` after its first byte; 431 (414 for the
  request target) as soon as it passes `max_header_bytes`, counted as it arrives, so an endless head holds at most
  that much;
- body arriving: 408 after `body_stall_timeout_s` without a byte, or once it averages under `body_min_rate` after
  `body_grace_s` (time the server itself paused reading is not counted);
- an answer the client does not read: the connection is aborted after `send_timeout_s`, which frees the app task
  blocked on it.

Bytes that are not HTTP get a JSON 400 `malformed_request` where uvicorn answered plain text. After any such error
answer the connection is half-closed and what the client still sends is read and dropped for `linger_s` (up to
64 KiB), so a client in the middle of an upload reads the answer instead of a reset. When the app was already
handling the request (its body stalled), the error is recorded in the request's scope
(`service.errors.record_protocol_error`): the app, woken by a disconnect, reports the same 408 or 400 in its metrics
and log line.

Subclassing keeps uvicorn's parsing, pipelining, flow control and graceful shutdown, which are well tried; what it
relies on of uvicorn's internals is pinned by the version range in pyproject.toml and checked by the tests.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from service.errors import (
    HeadersTooLargeError,
    MalformedRequestError,
    RequestTimeoutError,
    ServiceError,
    TooManyConnectionsError,
    UriTooLongError,
    raw_error_response,
    record_protocol_error,
    status_code_for,
)
from service.http.table import ConnectionTable, Phase

__all__ = ["GuardedHttpToolsProtocol"]

logger = logging.getLogger(__name__)

# After an error answer, what the client still sends is read and dropped for linger_s, but no more than this: enough
# for the rest of an ordinary request, while a client blasting an endless header costs the server little.
_LINGER_MAX_BYTES = 64 * 1024


class _HeadRefusedError(Exception):
    """Raised from a parser callback to stop parsing a head over its limits (httptools re-raises it as the context
    of an HttpParserCallbackError)."""

    def __init__(self, error: ServiceError, reason: str) -> None:
        super().__init__(error.message)
        self.error = error
        self.reason = reason


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """One client connection: uvicorn's HTTP/1.1 handling, plus a deadline per phase and limits on the head."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None, *, table: ConnectionTable) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._table = table
        self._limits = table.limits
        self.phase = Phase.IDLE
        self._now = 0.0  # loop time of the data being parsed: the parser callbacks read it
        self._since = 0.0  # when the idle or head phase began
        self._last_check = 0.0
        self._head_bytes = 0  # of an unfinished head, counted after the chunk it began in
        self._head_began_here = False
        self._body_started = 0.0
        self._body_last = 0.0
        self._body_received = 0
        self._write_paused_at: float | None = None
        self._close_after_answer = False
        self._linger_timer: asyncio.TimerHandle | None = None
        self._discarded = 0
        self._unanswered: deque[RequestResponseCycle] = deque()  # uvicorn keeps only the newest and the queued

    # Connection lifetime

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Register with the table (which may refuse the connection at the cap), then wait for a request."""
        super().connection_made(transport)
        self._last_check = now = self.loop.time()
        if not self._table.add(self):
            self.phase = Phase.CLOSING
            error = TooManyConnectionsError(f"the server holds its limit of {self._limits.max_connections} "
                                            "connections, all busy (LABELSERVE_MAX_CONNECTIONS); retry after 1 s")
            self._answer_and_linger(error)
            return
        self._enter_idle(now)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection; uvicorn wakes a request still waiting on it."""
        super().connection_lost(exc)
        self._table.discard(self)
        if self._linger_timer is not None:
            self._linger_timer.cancel()

    def evict(self) -> None:
        """Close this idle connection so a new one can take its place at the cap."""
        self.transport.close()

    # Bytes in

    def data_received(self, data: bytes) -> None:
        """Parse `data`; answer what is not HTTP or breaks a limit with a JSON error."""
        if self.phase is Phase.CLOSING:  # what a client we answered with an error still sends is read and dropped,
            self._discarded += len(data)  # up to a bound: one that keeps writing is not reading the answer
            if self._discarded > _LINGER_MAX_BYTES:
                self.transport.abort()
            return
        self._now = self.loop.time()
        self._head_began_here = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            refused = exc.__context__
            if isinstance(refused, _HeadRefusedError):
                self._fail(refused.error, refused.reason)
            else:  # uvicorn could not read the head (a request target that is not ASCII, ...)
                self._fail(MalformedRequestError(f"the request could not be read: {refused or exc}"), "malformed")
            return
        except httptools.HttpParserError as exc:
            self._fail(MalformedRequestError(f"the request is not valid HTTP/1.1: {exc}"), "malformed")
            return
        except httptools.HttpParserUpgrade:
            return  # no protocol upgrades here: the request is answered as plain HTTP, and the rest ignored
        if self.phase is Phase.HEADERS and not self._head_began_here:  # this whole chunk is part of the head
            self._head_bytes += len(data)
            if self._head_bytes > self._limits.max_header_bytes:
                self._fail(self._head_too_large(f"over {self._head_bytes} bytes and not complete"),
                           "header_too_large")

    def on_message_begin(self) -> None:
        """A request's first byte: its head has `header_timeout_s` from now."""
        super().on_message_begin()
        self._table.mark_busy(self)
        self.phase = Phase.HEADERS
        self._since = self._now
        self._head_bytes = 0
        self._head_began_here = True

    def on_url(self, url: bytes) -> None:
        """Collect the request target; refuse one longer than the whole head may be."""
        super().on_url(url)
        if len(self.url) > self._limits.max_header_bytes:
            raise _HeadRefusedError(UriTooLongError(f"the request target is over {self._limits.max_header_bytes} bytes "
                                               "(LABELSERVE_MAX_HEADER_BYTES)"), "uri_too_long")

    def on_headers_complete(self) -> None:
        """Check the complete head, hand the request to the app, and start the body's clock."""
        if len(self.headers) > self._limits.max_header_fields:
            raise _HeadRefusedError(HeadersTooLargeError(
                f"{len(self.headers)} header fields, over the limit of {self._limits.max_header_fields} "
                "(LABELSERVE_MAX_HEADER_FIELDS)"), "header_too_large")
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self._limits.max_header_bytes:
            raise _HeadRefusedError(self._head_too_large(f"{size} bytes"), "header_too_large")
        super().on_headers_complete()
        self._unanswered.append(self.cycle)
        self.phase = Phase.BODY
        self._body_started = self._body_last = self._now
        self._body_received = 0

    def on_body(self, body: bytes) -> None:
        """Count the body's bytes for its rate."""
        super().on_body(body)
        self._body_received += len(body)
        self._body_last = self._now

    def on_message_complete(self) -> None:
        """The request is complete: no client deadline until it is answered."""
        super().on_message_complete()
        if self.cycle.response_complete:  # answered before its body was in (a refusal at the door, a 413)
            self._enter_idle(self._now)
        else:
            self.phase = Phase.ANSWERING

    # Bytes out

    def on_response_complete(self) -> None:
        """An answer is out: the connection is idle unless another request is under way."""
        if self._close_after_answer:
            self.server_state.total_requests += 1
            self.transport.close()
            return
        while self._unanswered and self._unanswered[0].response_complete:
            self._unanswered.popleft()
        another_queued = bool(self.pipeline)
        super().on_response_complete()
        self._unset_keepalive_if_required()  # idle time is kept by the table's sweep, one timer for all connections
        if self.phase is Phase.ANSWERING and not another_queued and not self.transport.is_closing():
            self._enter_idle(self.loop.time())

    def pause_writing(self) -> None:
        """The client stopped reading: its answer has `send_timeout_s` to get out."""
        super().pause_writing()
        self._write_paused_at = self.loop.time()

    def resume_writing(self) -> None:
        """The client reads again."""
        super().resume_writing()
        self._write_paused_at = None

    # Deadlines (called by the table's sweep)

    def check_deadline(self, now: float) -> None:
        """Act on the deadline of the current phase if it has passed."""
        paused_for = now - self._last_check if self.flow.read_paused else 0.0
        self._last_check = now
        if self._write_paused_at is not None and now - self._write_paused_at >= self._limits.send_timeout_s:
            self._table.count_closed("send_timeout")
            logger.info("closing a connection whose client has not read its answer for %.0f s", now -
                        self._write_paused_at, extra={"client": _address(self.client)})
            self._abandon_answers()
            self.transport.abort()  # close() would wait for the unread answer to be flushed
            return
        phase = self.phase
        if phase is Phase.IDLE:
            if now - self._since >= self._limits.keep_alive_s:
                self._table.count_closed("idle")
                self.transport.close()
        elif phase is Phase.HEADERS:
            self._since += paused_for  # the server stopped reading: the client is not the one late
            if now - self._since >= self._limits.header_timeout_s:
                self._fail(RequestTimeoutError(f"the request headers were not complete within "
                                               f"{self._limits.header_timeout_s:g} s (LABELSERVE_HEADER_TIMEOUT_S)"),
                           "header_timeout")
        elif phase is Phase.BODY:
            if paused_for:
                self._body_started += paused_for
                self._body_last = now
            if now >= self._limits.body_deadline(self._body_started, self._body_last, self._body_received):
                self._fail(self._body_too_slow(now), "body_timeout")

    # Ending a connection for the client's fault

    def _fail(self, error: ServiceError, reason: str) -> None:
        """End this connection because of its client: answer `error` unless an answer is already owed or sent on
        it, stop the request the app may be reading, and close."""
        self._table.count_closed(reason)
        failing = self.cycle if self.phase is Phase.BODY else None  # a head in progress has no cycle yet
        earlier_unanswered = self._earlier_answer_pending(failing)
        if failing is not None:
            self._stop(failing, error)
        if earlier_unanswered:  # an answer to an earlier pipelined request comes first; then the connection ends
            self._close_after_answer = True
            self.flow.pause_reading()
            self.phase = Phase.CLOSING
        elif failing is not None and failing.response_started:
            self.transport.close()  # this request was answered already (refused at the door, 413)
        else:
            logger.info("%s: %s", error.code, error.message,
                        extra={"client": _address(self.client), "status": status_code_for(error)})
            self._answer_and_linger(error)

    def _earlier_answer_pending(self, failing: RequestResponseCycle | None) -> bool:
        if failing is None:
            return self.cycle is not None and not self.cycle.response_complete
        return any(cycle is failing for cycle, _app in self.pipeline)

    def _stop(self, cycle: RequestResponseCycle, error: ServiceError) -> None:
        """Wake the app from the request's body as a disconnect, with `error` recorded as the reason, so that it
        reports the error and frees what the request holds; a request still queued behind another never starts."""
        record_protocol_error(cycle.scope, error)
        cycle.disconnected = True
        cycle.message_event.set()
        self.pipeline = deque(item for item in self.pipeline if item[0] is not cycle)

    def _abandon_answers(self) -> None:
        """Tell every request still being answered on this connection that its client is gone, now: the transport
        refuses writes once aborted, and uvicorn would only tell the newest request, later."""
        for cycle in self._unanswered:
            if not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()
        self._unanswered.clear()
        self.flow.resume_writing()  # wakes the answer blocked on the full socket; it finds its client gone

    def _answer_and_linger(self, error: ServiceError) -> None:
        """Write `error`, half-close, and read and drop what the client still sends for `linger_s`."""
        self.phase = Phase.CLOSING
        self._table.mark_busy(self)
        self.transport.write(raw_error_response(error, self.server_state.default_headers))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.flow.resume_reading()
        self._linger_timer = self.loop.call_later(self._limits.linger_s, self.transport.abort)

    def _enter_idle(self, now: float) -> None:
        self.phase = Phase.IDLE
        self._since = now
        self._table.mark_idle(self)

    def _head_too_large(self, size: str) -> HeadersTooLargeError:
        return HeadersTooLargeError(f"the request line and headers are {size}, over the limit of "
                                    f"{self._limits.max_header_bytes} (LABELSERVE_MAX_HEADER_BYTES)")

    def _body_too_slow(self, now: float) -> RequestTimeoutError:
        limits = self._limits
        if now - self._body_last >= limits.body_stall_timeout_s:
            return RequestTimeoutError(f"the request body stalled: no byte for {limits.body_stall_timeout_s:g} s "
                                       "(LABELSERVE_BODY_STALL_TIMEOUT_S)")
        rate = self._body_received / max(now - self._body_started, 1e-9)
        return RequestTimeoutError(f"the request body arrived at {rate:.0f} bytes/s, under the minimum of "
                                   f"{limits.body_min_rate} (LABELSERVE_BODY_MIN_RATE) after "
                                   f"{limits.body_grace_s:g} s")


def _address(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "unknown"

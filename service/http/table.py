"""Every open client connection of one server process: the cap on their number, and one sweep that enforces each
connection's phase deadline.

One timer for all connections, every `SWEEP_S`, rather than a timer per connection and phase: a phase change is then
an assignment on the request path, and the sweep costs a comparison per connection (2,000 connections: about 1 ms a
second). Deadlines are met within one sweep.

At the cap, a new connection takes the place of the longest-idle one (what nginx does with its keep-alive
connections): an idle socket costs its owner nothing to hold, so idle sockets must never be what keeps a client
with a request out. Only when every connection is busy is the newcomer refused, with a JSON 503.
"""

from __future__ import annotations

import asyncio
import logging
import time
from enum import Enum
from typing import Protocol

from service.http.limits import ConnectionLimits, open_file_count, open_file_limit

__all__ = ["SWEEP_S", "ConnectionTable", "Phase", "TableObserver"]

logger = logging.getLogger(__name__)

SWEEP_S = 0.5
_FD_SAMPLE_S = 5.0  # how often the descriptors in use are counted (a directory listing of /proc/self/fd)
_FD_WARN_FRACTION = 0.9
_WARN_EVERY_S = 60.0  # one warning a minute per kind at most: an attacker must not be able to flood the log


class Phase(Enum):
    """Where a connection is, and so which limit applies to it."""

    IDLE = "idle"  # no request under way: keep_alive_s
    HEADERS = "headers"  # a request's head is arriving: header_timeout_s from its first byte
    BODY = "body"  # its body is arriving: stall timeout and minimum rate
    ANSWERING = "answering"  # the request is complete and the app is answering: the request's own deadline
    CLOSING = "closing"  # an error answer was sent; reading and discarding for linger_s


class Guarded(Protocol):
    """What the table needs of a connection (service.http.protocol.GuardedHttpToolsProtocol)."""

    phase: Phase

    def check_deadline(self, now: float) -> None:
        """Act on a phase deadline that has passed."""

    def evict(self) -> None:
        """Close this idle connection to make room for a new one."""


class TableObserver(Protocol):
    """Where the table reports what it sees (service.observability.Metrics implements it)."""

    def set_connections(self, by_phase: dict[str, int]) -> None:
        """Open connections, by phase name."""

    def count_connection_closed(self, reason: str) -> None:
        """One connection closed or refused by the server, for `reason`."""

    def set_file_descriptors(self, open_count: int, limit: int) -> None:
        """Descriptors in use and the process's limit."""


class ConnectionTable:
    """The connections of one server process, the cap on them, and the sweep of their deadlines."""

    def __init__(self, limits: ConnectionLimits, observer: TableObserver | None = None) -> None:
        self.limits = limits
        self._observer = observer
        self._connections: set[Guarded] = set()
        self._idle: dict[Guarded, None] = {}  # insertion order = idle since: the first is the longest idle
        self._timer: asyncio.TimerHandle | None = None
        self._next_fd_sample = 0.0
        self._warned: dict[str, float] = {}
        if observer is not None:  # every series exists from the start, before the first connection
            observer.set_connections(dict.fromkeys((phase.value for phase in Phase), 0))
        self._sample_file_descriptors()

    def __len__(self) -> int:
        return len(self._connections)

    def add(self, connection: Guarded) -> bool:
        """Register a new connection; False when it must be refused (at the cap, and no idle one to evict)."""
        if len(self._connections) >= self.limits.max_connections:
            if not self._idle:
                self.count_closed("refused")
                self._warn("refused", "%d connections open, none idle (LABELSERVE_MAX_CONNECTIONS): refusing new "
                           "ones with 503", len(self._connections))
                return False
            victim = next(iter(self._idle))
            self.count_closed("evicted")
            victim.evict()
            self.discard(victim)
        self._connections.add(connection)
        if self._timer is None:
            self._schedule()
        return True

    def discard(self, connection: Guarded) -> None:
        """Forget a closed connection."""
        self._connections.discard(connection)
        self._idle.pop(connection, None)

    def mark_idle(self, connection: Guarded) -> None:
        """The connection has no request under way from now on: the last of the idle order."""
        self._idle.pop(connection, None)
        self._idle[connection] = None

    def mark_busy(self, connection: Guarded) -> None:
        """The connection has a request under way."""
        self._idle.pop(connection, None)

    def count_closed(self, reason: str) -> None:
        """Report one connection closed (or refused) by the server."""
        if self._observer is not None:
            self._observer.count_connection_closed(reason)

    def _schedule(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(SWEEP_S, self._sweep)

    def _sweep(self) -> None:
        """Check every deadline; report the connections by phase; sample the descriptors now and then."""
        self._timer = None
        now = asyncio.get_running_loop().time()
        by_phase = dict.fromkeys((phase.value for phase in Phase), 0)
        for connection in list(self._connections):
            connection.check_deadline(now)
        for connection in self._connections:
            by_phase[connection.phase.value] += 1
        if self._observer is not None:
            self._observer.set_connections(by_phase)
        self._sample_file_descriptors()
        if self._connections:  # the sweep stops with the last connection and starts again with the next one
            self._schedule()

    def _sample_file_descriptors(self) -> None:
        wall = time.monotonic()
        if wall < self._next_fd_sample:
            return
        self._next_fd_sample = wall + _FD_SAMPLE_S
        in_use, limit = open_file_count(), open_file_limit()
        if in_use is None or limit is None:
            return
        if self._observer is not None:
            self._observer.set_file_descriptors(in_use, limit)
        if in_use >= _FD_WARN_FRACTION * limit:
            self._warn("descriptors", "%d of %d file descriptors in use: new connections will soon be reset by the "
                       "kernel; lower LABELSERVE_MAX_CONNECTIONS or raise the open-file limit", in_use, limit)

    def _warn(self, kind: str, message: str, *args: object) -> None:
        """Log a warning of this kind at most once a minute."""
        wall = time.monotonic()
        if wall - self._warned.get(kind, -_WARN_EVERY_S) >= _WARN_EVERY_S:
            self._warned[kind] = wall
            logger.warning(message, *args)


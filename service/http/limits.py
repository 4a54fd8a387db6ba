"""The HTTP layer's limits, built once from the settings, and the process's open-file limit they must fit in."""

from __future__ import annotations

import logging
import os
import resource
from dataclasses import dataclass

from service.settings import Settings

__all__ = ["ConnectionLimits", "open_file_count", "open_file_limit", "raise_open_file_limit"]

logger = logging.getLogger(__name__)

# Descriptors kept for everything but client connections: the listening socket, the event loop's own, log files,
# model files while they load, prometheus_client's multiprocess files, worker pipes.
FD_RESERVE = 128


@dataclass(frozen=True)
class ConnectionLimits:
    """How long each phase of a connection may take and how much a request's head may hold.

    Attributes:
        keep_alive_s: an idle connection (no request yet, or between two) is closed after this.
        header_timeout_s: a request's headers must be complete this long after its first byte (408).
        body_stall_timeout_s: longest pause between two bytes of a body (408).
        body_min_rate: bytes/s a body must average after `body_grace_s` (408); 0 turns the minimum off.
        body_grace_s: time a body has before the minimum rate applies.
        send_timeout_s: longest an answer waits for a client that does not read it (connection closed).
        max_header_bytes: request line plus headers (431; 414 for the request target alone).
        max_header_fields: header lines per request (431).
        max_connections: open connections in this process, already fitted to the open-file limit.
        linger_s: after an error answer, how long the connection stays half-open reading what the client still
            sends, so a client that is mid-upload reads the answer instead of a reset.
    """

    keep_alive_s: float
    header_timeout_s: float
    body_stall_timeout_s: float
    body_min_rate: int
    body_grace_s: float
    send_timeout_s: float
    max_header_bytes: int
    max_header_fields: int
    max_connections: int
    linger_s: float = 2.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        """The limits of `settings`, with the connection cap lowered to fit the open-file limit of this process."""
        return cls(keep_alive_s=settings.keep_alive_s, header_timeout_s=settings.header_timeout_s,
                   body_stall_timeout_s=settings.body_stall_timeout_s, body_min_rate=settings.body_min_rate,
                   body_grace_s=settings.body_grace_s, send_timeout_s=settings.send_timeout_s,
                   max_header_bytes=settings.max_header_bytes, max_header_fields=settings.max_header_fields,
                   max_connections=fitted_connection_cap(settings.max_connections))

    def body_deadline(self, started: float, last_byte: float, received: int) -> float:
        """When a body that began at `started` and has `received` bytes, the last at `last_byte`, times out: after a
        stall, or once it falls below the minimum rate (each byte buys 1/min_rate s beyond the grace)."""
        stalled = last_byte + self.body_stall_timeout_s
        if self.body_min_rate <= 0:
            return stalled
        return min(stalled, started + self.body_grace_s + received / self.body_min_rate)


def fitted_connection_cap(wanted: int) -> int:
    """`wanted`, lowered so that connections never take the descriptors the rest of the process needs."""
    limit = open_file_limit()
    if limit is None or wanted <= limit - FD_RESERVE:
        return wanted
    fitted = max(1, limit - FD_RESERVE)
    logger.warning("LABELSERVE_MAX_CONNECTIONS=%d does not fit the open-file limit of %d; serving at most %d "
                   "connections (raise the limit with `ulimit -n` or the container's nofile)", wanted, limit, fitted)
    return fitted


def open_file_limit() -> int | None:
    """The soft RLIMIT_NOFILE of this process (None when unlimited)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft open-file limit to the hard one (a process may, unprivileged), so a server is not refused
    connections at the 1,024 that many shells default to; returns (before, after). Child processes inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard or soft == resource.RLIM_INFINITY:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:  # a hard limit the kernel will not grant (nr_open): keep the soft one
        logger.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, exc)
        return soft, soft
    return soft, hard


def open_file_count() -> int | None:
    """Descriptors this process holds now (None where /proc is not available)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None

"""Admission control at the door: inference requests are counted from the moment their headers arrive, and those
beyond `LABELSERVE_MAX_IN_FLIGHT` are answered 503 with `Retry-After` before their body is read or parsed.

Without it, an overloaded server uploads, parses and decodes every request (the decode pool's queue has no bound)
only to refuse most of them at the batch queue, or to answer them after their deadline: its CPU goes to work that
is thrown away. With it, the requests let in are about as many as the batch queue can hold, so the admitted ones
finish in time, and a refused one costs a header parse and a small JSON answer. The arrival time is kept in the
request's scope (`arrival_time`), so a request's deadline counts from when the client's request reached the
server, not from when its body was parsed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import ServerBusyError, error_response

__all__ = ["AdmissionMiddleware", "arrival_time", "is_inference"]

_ARRIVAL_KEY = "labelserve_arrival"


def is_inference(scope: Scope) -> bool:
    """POST /predict and POST /v2/models/.../infer: the requests that cost model time."""
    if scope["type"] != "http" or scope.get("method") != "POST":
        return False
    path: str = scope.get("path", "")
    return path == "/predict" or (path.startswith("/v2/models/") and path.endswith("/infer"))


def arrival_time(scope: Scope) -> float:
    """When the request's headers reached the server (`time.monotonic()`); now, for a request not seen at the door."""
    arrived = scope.get("state", {}).get(_ARRIVAL_KEY)
    return float(arrived) if arrived is not None else time.monotonic()


class AdmissionMiddleware:
    """Lets at most `max_in_flight` inference requests in at a time; answers the rest 503 at once."""

    def __init__(self, app: ASGIApp, max_in_flight: int, on_refused: Callable[[], None] = lambda: None,
                 retry_after_s: int = 1) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.app = app
        self.max_in_flight = max_in_flight
        self.on_refused = on_refused
        self.in_flight = 0
        # Rendered once: a refusal must cost as little as possible, since refused clients come straight back.
        self._refusal = error_response(ServerBusyError(
            f"the server is handling its limit of {max_in_flight} inference requests (LABELSERVE_MAX_IN_FLIGHT); "
            f"retry after {retry_after_s} s", retry_after_s=retry_after_s))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stamp the arrival time; admit or refuse inference requests."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})[_ARRIVAL_KEY] = time.monotonic()
        if not is_inference(scope):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            # The body is left unread: the server discards it and the connection stays open for the next request.
            self.on_refused()
            await self._refusal(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

"""Admission control at the door: inference requests are counted from the moment their headers arrive, and those
beyond `LABELSERVE_MAX_IN_FLIGHT` are answered 503 with `Retry-After` before their body is read or parsed.

Without it, an overloaded server uploads, parses and decodes every request (the decode pool's queue has no bound)
only to refuse most of them at the batch queue, or to answer them after their deadline: its CPU goes to work that
is thrown away. With it, the requests let in are about as many as the batch queue can hold, so the admitted ones
finish in time, and a refused one costs a header parse and a small JSON answer. The arrival time is kept in the
request's scope (`arrival_time`), so a request's deadline counts from when the client's request reached the
server, not from when its body was parsed.

A request that finds every slot taken first waits at the door, in arrival order and with its body unread, for up to
`LABELSERVE_ADMISSION_WAIT_S` (1 s) for a slot to free up, and is refused only then. Clients that do not honour
`Retry-After` come straight back after a refusal: refused at once, 128 such clients against 32 slots made ~2,900
refusals a second on the demo model, whose CPU (the server's and the clients' on the same cores) cut the answers
to a fifth of the server's throughput. The wait bounds the refusal rate to about one per waiting client per wait,
absorbs bursts shorter than the wait, and adds at most the wait to an admitted request's latency (its deadline
still counts from arrival).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
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
    """Lets at most `max_in_flight` inference requests in at a time; the rest wait up to `wait_s` at the door, in
    arrival order, then are answered 503."""

    def __init__(self, app: ASGIApp, max_in_flight: int, on_refused: Callable[[], None] = lambda: None,
                 retry_after_s: int = 1, wait_s: float = 0.0) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        if wait_s < 0:
            raise ValueError(f"wait_s must be >= 0, got {wait_s}")
        self.app = app
        self.max_in_flight = max_in_flight
        self.wait_s = wait_s
        self.on_refused = on_refused
        self.in_flight = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        waited = f" after waiting {wait_s:g} s" if wait_s > 0 else ""
        # Rendered once: a refusal must cost as little as possible, since refused clients come straight back.
        self._refusal = error_response(ServerBusyError(
            f"the server is handling its limit of {max_in_flight} inference requests (LABELSERVE_MAX_IN_FLIGHT)"
            f"{waited}; retry after {retry_after_s} s", retry_after_s=retry_after_s))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stamp the arrival time; admit or refuse inference requests."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})[_ARRIVAL_KEY] = time.monotonic()
        if not is_inference(scope):
            await self.app(scope, receive, send)
            return
        if not await self._admit():
            # The body is left unread: the server discards it and the connection stays open for the next request.
            self.on_refused()
            await self._refusal(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self._release()

    async def _admit(self) -> bool:
        """Take a slot, waiting for one up to `wait_s` behind the requests that arrived earlier."""
        if self.in_flight < self.max_in_flight and not self._waiting:
            self.in_flight += 1
            return True
        if self.wait_s <= 0:
            return False
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await asyncio.wait_for(turn, self.wait_s)  # a slot handed over by _release resolves it
            return True
        except TimeoutError:
            return False
        except asyncio.CancelledError:  # the client left; a slot handed over meanwhile goes to the next in line
            if turn.done() and not turn.cancelled():
                self._release()
            raise
        finally:
            if turn in self._waiting:
                self._waiting.remove(turn)

    def _release(self) -> None:
        """Hand the slot to the longest-waiting request still waiting, or free it."""
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.in_flight -= 1

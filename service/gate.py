"""The compute gate every protocol passes: at most `max_in_flight` inference requests compute at once.

HTTP requests reach it through the admission middleware (service.admission) once their body is read, gRPC calls
through their adapter (service.oip_grpc) once their message is; both take slots from the same gate, so the limit
holds for the server, not per protocol. A request that finds every slot taken waits in arrival order for up to
`wait_s` (LABELSERVE_ADMISSION_WAIT_S) and is refused only then: see service.admission for why it waits.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from service.errors import ServerBusyError

__all__ = ["ComputeGate", "Slots"]


class Slots:
    """At most `limit` holders; others wait up to `wait_s` in arrival order for a slot to be handed over."""

    def __init__(self, limit: int, wait_s: float) -> None:
        if limit < 1:
            raise ValueError(f"a slot limit must be >= 1, got {limit}")
        if wait_s < 0:
            raise ValueError(f"wait_s must be >= 0, got {wait_s}")
        self.limit = limit
        self.wait_s = wait_s
        self.held = 0
        self.waiting: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> bool:
        """Take a slot, waiting for one up to `wait_s` behind the requests that came earlier."""
        if self.held < self.limit and not self.waiting:
            self.held += 1
            return True
        if self.wait_s <= 0:
            return False
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append(turn)
        try:
            await asyncio.wait_for(turn, self.wait_s)  # a slot handed over by release() resolves it
            return True
        except TimeoutError:
            return False
        except asyncio.CancelledError:  # the client left; a slot handed over meanwhile goes to the next in line
            if turn.done() and not turn.cancelled():
                self.release()
            raise
        finally:
            if turn in self.waiting:
                self.waiting.remove(turn)

    def release(self) -> None:
        """Hand the slot to the longest-waiting request still waiting, or free it."""
        while self.waiting:
            turn = self.waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.held -= 1


class ComputeGate:
    """The server's compute slots and the refusal it answers when none frees up in time."""

    def __init__(self, max_in_flight: int, wait_s: float = 0.0, retry_after_s: int = 1,
                 on_refused: Callable[[], None] = lambda: None) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.slots = Slots(max_in_flight, wait_s)
        self.on_refused = on_refused
        waited = f" after waiting {wait_s:g} s" if wait_s > 0 else ""
        self.busy = ServerBusyError(
            f"the server is handling its limit of {max_in_flight} inference requests (LABELSERVE_MAX_IN_FLIGHT)"
            f"{waited}; retry after {retry_after_s} s", retry_after_s=retry_after_s)

    @property
    def in_flight(self) -> int:
        """Inference requests computing now."""
        return self.slots.held

    async def acquire(self) -> bool:
        """Take a slot (waiting up to `wait_s`); False, counted as a refusal, when none freed up."""
        if await self.slots.acquire():
            return True
        self.on_refused()
        return False

    def release(self) -> None:
        """Give a slot back."""
        self.slots.release()

    @asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        """Hold a slot for the block.

        Raises:
            ServerBusyError: no slot freed up within `wait_s` (503 / UNAVAILABLE).
        """
        if not await self.acquire():
            raise self.busy
        try:
            yield
        finally:
            self.release()

"""Run a request's work under its deadline, and stop it when the client goes away.

Cancelling the work cancels its images' futures, so the batcher drops them from batches not yet run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.requests import Request

from service.errors import ClientDisconnectedError, DeadlineExceededError

__all__ = ["run_guarded"]

T = TypeVar("T")


async def _wait_for_disconnect(request: Request) -> None:
    """Return when the client disconnects; the body is already read, so receive() blocks until then."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def run_guarded(request: Request, work: Coroutine[Any, Any, T], timeout_s: float) -> T:
    """Await `work`, failing with DeadlineExceededError after `timeout_s` or ClientDisconnectedError on disconnect."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        task_finished = task.done()
        if not task_finished:
            task.cancel()
    if task_finished:
        return task.result()
    await asyncio.wait({task})  # let the cancellation run through (queued images are dropped)
    if watcher in done:
        raise ClientDisconnectedError("client disconnected before the answer was ready")
    raise DeadlineExceededError(f"the request did not finish within its deadline of {timeout_s:g} s (the timeout_s "
                                "field; default LABELSERVE_REQUEST_TIMEOUT_S)")

"""A request's deadline, counted from its arrival, over everything it does; and its work stopped when the client
goes away.

The deadline starts when the request's headers reached the server (`service.admission.arrival_time`), so the
upload, the parsing, the decode, the queue and the engine all count, as they do for the client waiting. The body
was read by the admission middleware under the server's default deadline (the request's own `timeout_s` is only
known once the body is parsed); the rest is bounded by the request's deadline. Cancelling the work cancels its
images' futures, so the batcher drops them from batches not yet run, and the 504 is sent at once rather than when
the engine is done.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.requests import ClientDisconnect, Request

from service.admission import arrival_time, buffered_body
from service.errors import ClientDisconnectedError, DeadlineExceededError, client_fault

__all__ = ["read_body", "request_deadline", "run_guarded"]

T = TypeVar("T")


def request_deadline(request: Request, timeout_s: float) -> float:
    """The `time.monotonic()` by which the request must be answered: its arrival plus `timeout_s`."""
    return arrival_time(request.scope) + timeout_s


def _deadline_error(timeout_s: float) -> DeadlineExceededError:
    return DeadlineExceededError(f"the request did not finish within its deadline of {timeout_s:g} s (the timeout_s "
                                 "field; default LABELSERVE_REQUEST_TIMEOUT_S)")


async def read_body(request: Request) -> bytes:
    """The whole body. The admission middleware has read it already, within the request's deadline and the upload
    budget (service.admission), so this returns at once; a client gone meanwhile is its fault (`client_fault`)."""
    body = buffered_body(request.scope)
    if body is not None:
        return body
    try:
        return await request.body()
    except ClientDisconnect:
        raise client_fault(request.scope) from None


async def _wait_for_disconnect(request: Request) -> None:
    """Return when the client disconnects; the body is already read, so receive() blocks until then."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def run_guarded(request: Request, work: Coroutine[Any, Any, T], timeout_s: float) -> T:
    """Await `work`, failing with DeadlineExceededError once `timeout_s` have passed since the request arrived, or
    with ClientDisconnectedError when the client disconnects."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    remaining = max(0.0, request_deadline(request, timeout_s) - time.monotonic())
    try:
        done, _ = await asyncio.wait({task, watcher}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
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
    raise _deadline_error(timeout_s)

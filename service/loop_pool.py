"""Worker threads for the event loop's CPU work (decoding, preprocessing, PNG encoding), handed over cheaply.

`loop.run_in_executor` on a `ThreadPoolExecutor` costs the loop's thread, per call, a concurrent Future chained to
an asyncio one and a Python-level semaphore and condition (`ThreadPoolExecutor._adjust_thread_count`) whose lock the
workers take too: when a worker holds it, the loop's thread blocks, gives up the GIL, and then waits for the GIL
behind the decode threads for up to the interpreter's switch interval. Profiled with py-spy on the demo model at 32
clients, `ThreadPoolExecutor.submit` was 18 % of the loop thread's samples, on the thread that caps the front end.
Here a submission is one put on a C `SimpleQueue` (it neither blocks nor releases the GIL) and a result comes back
with one `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["LoopThreadPool"]

T = TypeVar("T")

_Work = tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any], asyncio.AbstractEventLoop]


class LoopThreadPool:
    """`threads` daemon threads named `<name>_<i>` running functions for coroutines: `await pool.run(fn, *args)`."""

    def __init__(self, threads: int, name: str) -> None:
        if threads < 1:
            raise ValueError(f"a pool needs at least one thread, got {threads}")
        self.max_workers = threads
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True) for i in range(threads)]
        for thread in self._threads:
            thread.start()

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` on one of the pool's threads; its exception is raised here. Cancelling the caller
        drops the result (work already started finishes on its thread)."""
        if self._closed:
            raise RuntimeError("the pool is shut down")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((function, args, future, loop))
        return await future

    def shutdown(self, cancel_pending: bool = True) -> None:
        """Stop the threads once they finish what they run; work not yet started is cancelled (or, with
        `cancel_pending=False`, still done first). Returns at once."""
        self._closed = True
        if cancel_pending:
            while True:
                try:
                    work = self._queue.get_nowait()
                except queue.Empty:
                    break
                if work is not None:
                    _call_in_loop(work[3], _cancel, work[2])
        for _ in self._threads:
            self._queue.put(None)

    def _work(self) -> None:
        while (work := self._queue.get()) is not None:
            function, args, future, loop = work
            if future.cancelled():  # a read of a flag the loop set; at worst the result is dropped below instead
                continue
            try:
                result = function(*args)
            except Exception as error:
                _call_in_loop(loop, _set_exception, future, error)
            else:
                _call_in_loop(loop, _set_result, future, result)


def _call_in_loop(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody awaits the result any more
        loop.call_soon_threadsafe(callback, *args)


def _set_result(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)


def _cancel(future: asyncio.Future[Any]) -> None:
    future.cancel()

"""LoopThreadPool: the decode threads' hand-over to and from the event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from service.loop_pool import LoopThreadPool


def test_runs_on_the_pools_named_threads_in_parallel() -> None:
    pool = LoopThreadPool(3, name="decode-test")
    barrier = threading.Barrier(3, timeout=5)  # only passes if three calls run at the same time

    def meet(i: int) -> tuple[int, str]:
        barrier.wait()
        return i * i, threading.current_thread().name

    async def main() -> list[tuple[int, str]]:
        return await asyncio.gather(*(pool.run(meet, i) for i in range(3)))

    try:
        results = asyncio.run(main())
    finally:
        pool.shutdown()
    assert [value for value, _ in results] == [0, 1, 4]
    assert {name for _, name in results} == {"decode-test_0", "decode-test_1", "decode-test_2"}


def test_an_exception_is_raised_in_the_awaiting_coroutine_and_the_thread_lives_on() -> None:
    pool = LoopThreadPool(1, name="decode-test")

    def fail() -> None:
        raise ValueError("corrupt image")

    async def main() -> int:
        with pytest.raises(ValueError, match="corrupt image"):
            await pool.run(fail)
        return await pool.run(len, "abc")

    try:
        assert asyncio.run(main()) == 3
    finally:
        pool.shutdown()


def test_shutdown_cancels_work_not_started_and_refuses_new_work() -> None:
    pool = LoopThreadPool(1, name="decode-test")
    started, release = threading.Event(), threading.Event()

    def block() -> str:
        started.set()
        release.wait(5)
        return "finished"

    async def main() -> None:
        running = asyncio.ensure_future(pool.run(block))
        await asyncio.to_thread(started.wait, 5)
        queued = asyncio.ensure_future(pool.run(len, "never run"))
        await asyncio.sleep(0)  # the queued call is on the pool's queue now
        pool.shutdown()
        release.set()
        assert await running == "finished"  # what had started is finished and delivered
        with pytest.raises(asyncio.CancelledError):
            await queued
        with pytest.raises(RuntimeError, match="shut down"):
            await pool.run(len, "late")

    asyncio.run(main())


def test_a_cancelled_caller_drops_the_result_without_breaking_the_pool() -> None:
    pool = LoopThreadPool(1, name="decode-test")
    started, release = threading.Event(), threading.Event()

    def block() -> str:
        started.set()
        release.wait(5)
        return "dropped"

    async def main() -> str:
        task = asyncio.ensure_future(pool.run(block))
        await asyncio.to_thread(started.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        return await pool.run(str.upper, "next")

    try:
        assert asyncio.run(main()) == "NEXT"
    finally:
        pool.shutdown()


def test_a_pool_needs_a_thread() -> None:
    with pytest.raises(ValueError, match="at least one thread"):
        LoopThreadPool(0, name="decode-test")

"""DynamicBatcher logic, with a deterministic stand-in engine (the only fake in the service tests).

Each image is a constant array whose value is its index, and the stand-in engine echoes that value as the
image's logits, so every test can see which image landed in which batch and whether each caller got its own row.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from service.batching import DynamicBatcher
from service.engines.base import EngineInfo
from service.errors import EngineError, NotReadyError, QueueFullError
from service.observability import Metrics

_WAIT_S = 5.0


class StandInEngine:
    """Echoes each image's fill value as its logits; can block on a gate and fail chosen calls."""

    def __init__(self, fail_calls: Sequence[int] = (), gated: bool = False) -> None:
        self.batches: list[list[float]] = []
        self.outputs_requested: list[tuple[str, ...]] = []
        self.fail_calls = set(fail_calls)
        self.gate = threading.Event()
        self.started = threading.Event()
        self.closed = threading.Event()
        self.events: list[tuple[str, str]] = []  # (what, thread name): the order of runs and close
        if not gated:
            self.gate.set()

    @property
    def info(self) -> EngineInfo:
        return EngineInfo(name="stand-in", provider="cpu", max_batch_size=64)

    def load(self) -> None:
        """Nothing to load."""

    def run(self, batch: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        self.started.set()
        if not self.gate.wait(_WAIT_S):
            raise TimeoutError("the test never opened the gate")
        call = len(self.batches) + 1
        self.events.append(("run", threading.current_thread().name))
        self.batches.append([float(v) for v in batch[:, 0, 0, 0]])
        self.outputs_requested.append(tuple(outputs))
        if call in self.fail_calls:
            raise RuntimeError(f"stand-in failure on call {call}")
        result = {"logits": np.repeat(batch[:, 0, 0, :1], 3, axis=1)}  # [B, 3], every value = the image's index
        if "attention" in outputs:
            result["attention"] = batch[:, :3, :2, :2]  # [B, 3, 2, 2]
        return result

    def close(self) -> None:
        self.events.append(("close", threading.current_thread().name))
        self.closed.set()


def _image(value: float) -> np.ndarray:
    return np.full((3, 4, 4), value, dtype=np.float32)


def _batcher(engine: StandInEngine, metrics: Metrics | None = None, **overrides: float) -> DynamicBatcher:
    options = {"max_batch_size": 4, "max_queue_delay_ms": 50.0, "max_queue_size": 64} | overrides
    return DynamicBatcher(engine, logits_output="logits", attention_output="attention",
                          observer=(metrics or Metrics()).observer("m", 1), name="m",
                          max_batch_size=int(options["max_batch_size"]),
                          max_queue_delay_ms=float(options["max_queue_delay_ms"]),
                          max_queue_size=int(options["max_queue_size"]))


async def _wait_thread_event(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, _WAIT_S), "the engine was never called"


def test_concurrent_items_form_full_batches_and_each_caller_gets_its_row() -> None:
    engine = StandInEngine()
    metrics = Metrics()

    async def scenario() -> list[dict[str, np.ndarray]]:
        batcher = _batcher(engine, metrics)
        batcher.start()
        results = await asyncio.gather(*(batcher.infer(_image(i)) for i in range(10)))
        await batcher.stop(_WAIT_S)
        return results

    results = asyncio.run(scenario())
    assert engine.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    for index, outputs in enumerate(results):
        assert set(outputs) == {"logits"}
        np.testing.assert_array_equal(outputs["logits"], [index] * 3)
    labels = {"model": "m", "version": "1"}
    assert metrics.registry.get_sample_value("labelserve_batch_size_count", labels) == 3
    assert metrics.registry.get_sample_value("labelserve_batch_size_sum", labels) == 10
    assert metrics.registry.get_sample_value("labelserve_queue_wait_seconds_count", labels) == 10
    assert metrics.registry.get_sample_value("labelserve_inference_duration_seconds_count", labels) == 3
    assert metrics.registry.get_sample_value("labelserve_images_total", labels) == 10


def test_lone_item_with_nothing_announced_runs_at_once() -> None:
    engine = StandInEngine()

    async def scenario() -> float:
        batcher = _batcher(engine, max_queue_delay_ms=10_000.0)
        batcher.start()
        started = time.monotonic()
        await batcher.infer(_image(7))
        elapsed = time.monotonic() - started
        await batcher.stop(_WAIT_S)
        return elapsed

    assert asyncio.run(scenario()) < 2.0  # not the 10 s delay: nobody else is coming
    assert engine.batches == [[7]]


def test_an_announced_image_is_waited_for_and_joins_the_batch() -> None:
    engine = StandInEngine()

    async def scenario() -> None:
        batcher = _batcher(engine, max_queue_delay_ms=10_000.0)
        batcher.start()

        async def late_image() -> dict[str, np.ndarray]:
            with batcher.incoming():
                await asyncio.sleep(0.1)  # "decoding"
                pending = batcher.submit(_image(2))
            return await pending

        late = asyncio.create_task(late_image())
        await asyncio.sleep(0)  # the announcement is made before the first image is queued
        await asyncio.gather(batcher.infer(_image(1)), late)
        await batcher.stop(_WAIT_S)

    asyncio.run(scenario())
    assert engine.batches == [[1, 2]]


def test_an_announced_image_that_never_comes_is_waited_for_until_the_delay() -> None:
    engine = StandInEngine()

    async def scenario() -> float:
        batcher = _batcher(engine, max_queue_delay_ms=100.0)
        batcher.start()
        with batcher.incoming():  # e.g. a slow decode that outlives the delay
            started = time.monotonic()
            await batcher.infer(_image(7))
            elapsed = time.monotonic() - started
        await batcher.stop(_WAIT_S)
        return elapsed

    assert 0.09 <= asyncio.run(scenario()) < 2.0
    assert engine.batches == [[7]]


def test_a_withdrawn_announcement_wakes_the_collector_at_once() -> None:
    engine = StandInEngine()

    async def scenario() -> float:
        batcher = _batcher(engine, max_queue_delay_ms=10_000.0)
        batcher.start()

        async def failing_decode() -> None:
            with batcher.incoming():
                await asyncio.sleep(0.1)  # then the image turns out to be corrupt: nothing is submitted

        started = time.monotonic()
        failing = asyncio.create_task(failing_decode())
        await asyncio.sleep(0)
        await batcher.infer(_image(3))
        await failing
        elapsed = time.monotonic() - started
        await batcher.stop(_WAIT_S)
        return elapsed

    assert asyncio.run(scenario()) < 2.0
    assert engine.batches == [[3]]


def test_full_batch_runs_without_waiting_for_the_delay() -> None:
    engine = StandInEngine()

    async def scenario() -> float:
        batcher = _batcher(engine, max_batch_size=2, max_queue_delay_ms=10_000.0)
        batcher.start()
        started = time.monotonic()
        await asyncio.gather(batcher.infer(_image(1)), batcher.infer(_image(2)))
        elapsed = time.monotonic() - started
        await batcher.stop(_WAIT_S)
        return elapsed

    assert asyncio.run(scenario()) < 2.0
    assert engine.batches == [[1, 2]]


def test_zero_delay_takes_only_what_is_already_queued() -> None:
    engine = StandInEngine(gated=True)

    async def scenario() -> None:
        batcher = _batcher(engine, max_queue_delay_ms=0.0)
        batcher.start()
        first = asyncio.ensure_future(batcher.infer(_image(0)))
        await _wait_thread_event(engine.started)  # item 0 is in the engine; the next three queue up meanwhile
        rest = [asyncio.ensure_future(batcher.infer(_image(i))) for i in (1, 2, 3)]
        await asyncio.sleep(0)
        engine.gate.set()
        await asyncio.gather(first, *rest)
        await batcher.stop(_WAIT_S)

    asyncio.run(scenario())
    assert engine.batches == [[0], [1, 2, 3]]


def test_engine_error_fails_only_its_batch_and_the_loop_keeps_going() -> None:
    engine = StandInEngine(fail_calls=[1])

    async def scenario() -> tuple[list[object], dict[str, np.ndarray]]:
        batcher = _batcher(engine, max_batch_size=2)
        batcher.start()
        results = await asyncio.gather(*(batcher.infer(_image(i)) for i in range(4)), return_exceptions=True)
        later = await batcher.infer(_image(9))
        await batcher.stop(_WAIT_S)
        return results, later

    results, later = asyncio.run(scenario())
    assert engine.batches == [[0, 1], [2, 3], [9]]
    assert all(isinstance(r, EngineError) for r in results[:2])
    assert "stand-in failure" in str(results[0])
    assert isinstance(results[0], EngineError) and isinstance(results[0].__cause__, RuntimeError)
    for index in (2, 3):
        outputs = results[index]
        assert isinstance(outputs, dict)
        np.testing.assert_array_equal(outputs["logits"], [index] * 3)
    np.testing.assert_array_equal(later["logits"], [9] * 3)


def test_full_queue_raises_queue_full_and_counts_the_rejection() -> None:
    engine = StandInEngine(gated=True)
    metrics = Metrics()

    async def scenario() -> list[dict[str, np.ndarray]]:
        batcher = _batcher(engine, metrics, max_queue_size=2, max_batch_size=1)
        batcher.start()
        running = asyncio.ensure_future(batcher.infer(_image(0)))
        await _wait_thread_event(engine.started)  # item 0 left the queue and blocks the engine
        queued = [batcher.submit(_image(1)), batcher.submit(_image(2))]
        with pytest.raises(QueueFullError) as raised:
            batcher.submit(_image(3))
        assert raised.value.retry_after_s >= 1
        engine.gate.set()
        results = await asyncio.gather(running, *queued)
        await batcher.stop(_WAIT_S)
        return results

    results = asyncio.run(scenario())
    assert [r["logits"][0] for r in results] == [0, 1, 2]
    assert metrics.registry.get_sample_value(
        "labelserve_rejections_total", {"model": "m", "version": "1", "reason": "queue_full"}) == 1


def test_cancelled_items_are_dropped_before_the_engine_sees_them() -> None:
    engine = StandInEngine(gated=True)

    async def scenario() -> None:
        batcher = _batcher(engine, max_queue_delay_ms=0.0)
        batcher.start()
        first = asyncio.ensure_future(batcher.infer(_image(0)))
        await _wait_thread_event(engine.started)
        waiting = {i: asyncio.ensure_future(batcher.infer(_image(i))) for i in (1, 2, 3)}
        await asyncio.sleep(0)  # let the three submit
        waiting[2].cancel()  # e.g. its client disconnected or its deadline passed
        await asyncio.sleep(0)
        engine.gate.set()
        await asyncio.gather(first, waiting[1], waiting[3])
        assert waiting[2].cancelled()
        await batcher.stop(_WAIT_S)

    asyncio.run(scenario())
    assert engine.batches == [[0], [1, 3]]


def test_attention_is_computed_only_for_batches_that_ask_and_returned_only_to_askers() -> None:
    engine = StandInEngine()

    async def scenario() -> tuple[dict[str, np.ndarray], ...]:
        batcher = _batcher(engine, max_batch_size=2)
        batcher.start()
        plain = await batcher.infer(_image(1))
        asker, other = await asyncio.gather(batcher.infer(_image(2), attention=True), batcher.infer(_image(3)))
        await batcher.stop(_WAIT_S)
        return plain, asker, other

    plain, asker, other = asyncio.run(scenario())
    assert engine.outputs_requested == [("logits",), ("logits", "attention")]
    assert set(plain) == {"logits"} and set(other) == {"logits"}
    assert asker["attention"].shape == (3, 2, 2)
    np.testing.assert_array_equal(asker["attention"], np.full((3, 2, 2), 2.0))


def test_stop_serves_queued_work_then_refuses_new_items() -> None:
    engine = StandInEngine(gated=True)

    async def scenario() -> list[dict[str, np.ndarray]]:
        batcher = _batcher(engine, max_batch_size=2)
        batcher.start()
        pending = [asyncio.ensure_future(batcher.infer(_image(i))) for i in range(5)]
        await _wait_thread_event(engine.started)
        stopping = asyncio.ensure_future(batcher.stop(_WAIT_S))
        await asyncio.sleep(0)
        with pytest.raises(NotReadyError):
            batcher.submit(_image(9))
        engine.gate.set()
        await stopping
        return await asyncio.gather(*pending)

    results = asyncio.run(scenario())
    assert [r["logits"][0] for r in results] == [0, 1, 2, 3, 4]
    assert sum(len(batch) for batch in engine.batches) == 5
    assert engine.closed.is_set()
    assert [what for what, _ in engine.events] == ["run", "run", "run", "close"]
    assert len({thread for _, thread in engine.events}) == 1  # closed on the thread that ran the batches


def test_stop_past_its_timeout_fails_what_is_left() -> None:
    engine = StandInEngine(gated=True)

    async def scenario() -> list[object]:
        batcher = _batcher(engine, max_batch_size=1)
        batcher.start()
        pending = [asyncio.ensure_future(batcher.infer(_image(i))) for i in range(3)]
        await _wait_thread_event(engine.started)
        await batcher.stop(0.05)
        results = await asyncio.gather(*pending, return_exceptions=True)
        engine.gate.set()  # let the engine thread finish
        return results

    results = asyncio.run(scenario())
    assert all(isinstance(r, NotReadyError) for r in results)
    # the engine is closed only once the batch that outlived the timeout has finished, never under it
    assert engine.closed.wait(_WAIT_S)
    assert [what for what, _ in engine.events] == ["run", "close"]


def test_a_batcher_that_never_started_still_closes_its_engine() -> None:
    engine = StandInEngine()
    asyncio.run(_batcher(engine).stop(_WAIT_S))
    assert [what for what, _ in engine.events] == ["close"]


def test_constructor_refuses_nonsense_limits() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        _batcher(StandInEngine(), max_batch_size=0)
    with pytest.raises(ValueError, match="max_queue_size"):
        _batcher(StandInEngine(), max_queue_size=0)


class LoneAwareEngine(StandInEngine):
    """The stand-in with `run_lone` (service.engines.base.LoneBatchEngine): records which path each batch took."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.paths: list[str] = []

    def run(self, batch: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        self.paths.append("run")
        return super().run(batch, outputs)

    def run_lone(self, batch: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        self.paths.append("lone")
        return super().run(batch, outputs)


def test_a_lone_image_at_an_idle_batcher_takes_the_engines_lone_path_and_batches_do_not() -> None:
    engine = LoneAwareEngine(gated=True)

    async def scenario() -> None:
        batcher = _batcher(engine, max_batch_size=4, max_queue_delay_ms=10_000.0)
        batcher.start()
        first = asyncio.ensure_future(batcher.infer(_image(1)))  # alone: the lone path
        await _wait_thread_event(engine.started)
        rest = [asyncio.ensure_future(batcher.infer(_image(i))) for i in (2, 3)]  # queue behind it: one batch
        await asyncio.sleep(0.05)
        engine.gate.set()
        await asyncio.gather(first, *rest)
        behind = asyncio.ensure_future(batcher.infer(_image(4)))  # alone again, but another image is announced
        with batcher.incoming():
            await asyncio.sleep(0.05)
            batcher.submit(_image(5))
        await behind
        last = await batcher.infer(_image(6))  # idle again: lone
        np.testing.assert_array_equal(last["logits"], [6] * 3)
        await batcher.stop(_WAIT_S)

    asyncio.run(scenario())
    assert engine.batches == [[1], [2, 3], [4, 5], [6]]
    assert engine.paths == ["lone", "run", "run", "lone"]


def test_a_single_image_with_others_queued_behind_a_full_batch_is_not_lone() -> None:
    engine = LoneAwareEngine()

    async def scenario() -> None:
        batcher = _batcher(engine, max_batch_size=2, max_queue_delay_ms=0.0)
        batcher.start()
        await asyncio.gather(*(batcher.infer(_image(i)) for i in range(5)))
        await batcher.stop(_WAIT_S)

    asyncio.run(scenario())
    assert engine.batches == [[0, 1], [2, 3], [4]]
    assert engine.paths == ["run", "run", "lone"]  # the last one found nothing queued behind it


def test_an_image_is_not_lone_while_other_requests_are_in_flight_or_another_batch_runs() -> None:
    busy_engine, other_engine = LoneAwareEngine(), LoneAwareEngine(gated=True)
    in_flight = [3]  # e.g. requests still being parsed or sent back, which this batcher cannot see

    async def scenario() -> None:
        busy = DynamicBatcher(busy_engine, logits_output="logits", attention_output=None, max_batch_size=4,
                              max_queue_delay_ms=0.0, max_queue_size=8, observer=Metrics().observer("m", 1),
                              name="busy", requests_in_flight=lambda: in_flight[0])
        other = _batcher(other_engine)
        busy.start()
        other.start()
        await busy.infer(_image(1))  # three requests in the server: not lone
        in_flight[0] = 1
        running = asyncio.ensure_future(other.infer(_image(2)))  # another model's lone batch, held running
        await _wait_thread_event(other_engine.started)
        await busy.infer(_image(3))  # alone in its batcher and the only request, but the other batch runs
        other_engine.gate.set()
        await running
        await busy.infer(_image(4))  # now the server is idle but for it
        await asyncio.gather(busy.stop(_WAIT_S), other.stop(_WAIT_S))

    asyncio.run(scenario())
    assert busy_engine.batches == [[1], [3], [4]]
    assert busy_engine.paths == ["run", "run", "lone"]
    assert other_engine.paths == ["lone"]

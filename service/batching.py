"""Dynamic batching: many concurrent requests, one engine call per batch.

Requests put a `PendingItem` (one preprocessed image + a future) on a bounded queue. One collector task per model
takes the first item, then keeps collecting until the batch is full or `max_queue_delay_ms` has passed since that
first item arrived (like Triton's `max_queue_delay_microseconds`), waiting on the queue with the remaining time
rather than polling. Unlike Triton it does not wait for images nobody is preparing: requests announce their images
while they decode (`incoming()`), and when the queue is empty and nothing is announced the batch runs at once, so
a lone request does not pay the delay. The stacked batch runs on the engine's single executor thread, so exactly
one batch is in flight per engine and the event loop never blocks; row `i` of the outputs resolves future `i`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Final, Protocol

import numpy as np

from service import tracing
from service.engines.base import Engine, LoneBatchEngine
from service.errors import EngineError, NotReadyError, QueueFullError

if TYPE_CHECKING:
    from opentelemetry.trace import SpanContext

__all__ = ["BatchObserver", "DynamicBatcher", "Outputs", "PendingItem"]

logger = logging.getLogger(__name__)

Outputs = dict[str, np.ndarray]


class BatchObserver(Protocol):
    """Where the batcher reports what it does (Prometheus in the app, see `service.observability`)."""

    def observe_batch(self, size: int, inference_s: float) -> None:
        """One engine call of `size` images took `inference_s` seconds."""
        ...

    def observe_queue_wait(self, wait_s: float) -> None:
        """One image waited `wait_s` seconds between submit and the start of its batch."""
        ...

    def set_queue_depth(self, depth: int) -> None:
        """Images now waiting in the queue."""
        ...

    def observe_rejection(self, reason: str) -> None:
        """An image was refused (`reason`: "queue_full")."""
        ...

    def observe_failure(self, size: int, seconds: float) -> None:
        """The engine failed on a batch of `size` images after `seconds`."""
        ...


@dataclass(eq=False)
class PendingItem:
    """One image waiting for inference."""

    array: np.ndarray  # [3, H, W] float32
    attention: bool
    future: asyncio.Future[Outputs]
    enqueued_at: float = field(default_factory=time.monotonic)
    trace: SpanContext | None = None  # the request's span, when it is traced (service.tracing)


class _Stop:
    """Queue sentinel: everything queued before it is still served, then the collector ends."""


_STOP: Final = _Stop()


class DynamicBatcher:
    """Groups single-image requests for one engine into batches."""

    _batches_running: ClassVar[int] = 0  # over every batcher of the process (models, versions, shadows)

    def __init__(self, engine: Engine, *, logits_output: str, attention_output: str | None, max_batch_size: int,
                 max_queue_delay_ms: float, max_queue_size: int, observer: BatchObserver,
                 name: str = "model", on_logits: Callable[[np.ndarray], None] | None = None,
                 requests_in_flight: Callable[[], int] = lambda: 0) -> None:
        """Configure the batcher; call `start()` from the event loop before submitting.

        Args:
            engine: a loaded engine.
            logits_output: output name always requested.
            attention_output: output name requested when an item of the batch asks for attention (None: no such
                output).
            max_batch_size: largest batch to form (the caller caps it by the engine's limit).
            max_queue_delay_ms: longest a batch waits for more items after its first item was queued.
            max_queue_size: images that may wait; more raise QueueFullError.
            observer: receives batch sizes, waits, queue depth and rejections.
            name: model name for log lines and error messages.
            on_logits: called on the engine thread with each batch's logits `[B, C]` (the label monitor); what it
                raises is logged, never failing the batch.
            requests_in_flight: inference requests the server is computing now, over every model and protocol (the
                compute gate's count): a batch is lone, and may take the engine's `run_lone`, only while it is one.
        """
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_queue_size < 1:
            raise ValueError(f"max_queue_size must be >= 1, got {max_queue_size}")
        if max_queue_delay_ms < 0:
            raise ValueError(f"max_queue_delay_ms must be >= 0, got {max_queue_delay_ms}")
        self._engine = engine
        self._run_lone = engine.run_lone if isinstance(engine, LoneBatchEngine) else engine.run
        self._logits_output = logits_output
        self._attention_output = attention_output
        self.max_batch_size = max_batch_size
        self._max_delay_s = max_queue_delay_ms / 1000.0
        self._observer = observer
        self.name = name
        self._on_logits = on_logits
        self._requests_in_flight = requests_in_flight
        self._queue: asyncio.Queue[PendingItem | _Stop] = asyncio.Queue(maxsize=max_queue_size)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"engine-{name}")
        self._task: asyncio.Task[None] | None = None
        self._in_flight: list[PendingItem] = []
        self._accepting = False
        self._incoming = 0  # images being decoded that will be submitted soon
        self._incoming_changed = asyncio.Event()

    @property
    def queue_depth(self) -> int:
        """Images waiting for a batch right now."""
        return self._queue.qsize()

    @property
    def pending(self) -> int:
        """Images waiting for a batch or in the batch the engine is running."""
        return self._queue.qsize() + len(self._in_flight)

    def start(self) -> None:
        """Start the collector task on the running event loop."""
        if self._task is not None:
            raise RuntimeError(f"batcher for {self.name} was already started")
        self._task = asyncio.get_running_loop().create_task(self._collect_loop(), name=f"batcher-{self.name}")
        self._task.add_done_callback(self._log_unexpected_end)
        self._accepting = True

    @contextlib.contextmanager
    def incoming(self, count: int = 1) -> Iterator[None]:
        """Announce `count` images that are being prepared and will be submitted inside this block.

        The collector waits for announced images (up to the delay) and not for anything else.
        """
        self._incoming += count
        try:
            yield
        finally:
            self._incoming -= count
            self._incoming_changed.set()

    def submit(self, array: np.ndarray, attention: bool = False) -> asyncio.Future[Outputs]:
        """Queue one preprocessed image; the returned future resolves to its outputs (batch dimension removed).

        Raises:
            QueueFullError: `max_queue_size` images are already waiting.
            NotReadyError: the batcher is not started or is stopping.
        """
        if not self._accepting or self._task is None or self._task.done():
            raise NotReadyError(f"model {self.name!r} is not accepting requests (starting or shutting down)")
        future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(PendingItem(array=array, attention=attention, future=future,
                                               trace=tracing.current_context()))
        except asyncio.QueueFull:
            self._observer.observe_rejection("queue_full")
            raise QueueFullError(f"model {self.name!r} has {self._queue.maxsize} images queued; retry shortly",
                                 retry_after_s=1) from None
        self._observer.set_queue_depth(self._queue.qsize())
        return future

    async def infer(self, array: np.ndarray, attention: bool = False) -> Outputs:
        """Submit one image and wait for its outputs; cancelling the caller drops the item from its batch."""
        return await self.submit(array, attention)

    async def stop(self, timeout_s: float) -> None:
        """Stop accepting, serve what is queued within `timeout_s`, then end and close the engine; later waiters get
        NotReadyError."""
        self._accepting = False
        deadline = time.monotonic() + timeout_s
        if self._task is not None:
            stopper = asyncio.ensure_future(self._queue.put(_STOP))  # waits for a free slot if the queue is full
            await asyncio.wait({self._task}, timeout=max(0.0, deadline - time.monotonic()))
            stopper.cancel()
            if not self._task.done():
                logger.warning("batcher %s did not drain within %.1f s; failing %d queued requests", self.name,
                               timeout_s, self._queue.qsize() + len(self._in_flight))
                self._task.cancel()
                await asyncio.wait({self._task})
            self._fail_leftovers()
        # on the engine thread, so it runs after a batch that outlived the timeout rather than under it
        closing = asyncio.wrap_future(self._executor.submit(self._close_engine))
        self._executor.shutdown(wait=False)
        self._observer.set_queue_depth(0)
        await asyncio.wait({closing}, timeout=max(0.0, deadline - time.monotonic()))

    def _close_engine(self) -> None:
        try:
            self._engine.close()
        except Exception:  # a failing close must not stop the shutdown of the rest
            logger.exception("closing the engine of batcher %s failed", self.name)

    def _fail_leftovers(self) -> None:
        leftovers = list(self._in_flight)
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, PendingItem):
                leftovers.append(item)
        for item in leftovers:
            if not item.future.done():
                item.future.set_exception(NotReadyError(f"model {self.name!r} shut down before this request ran"))
        self._in_flight = []

    def _log_unexpected_end(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("batcher %s stopped on an unexpected error", self.name, exc_info=task.exception())

    async def _collect_loop(self) -> None:
        while True:
            first = await self._queue.get()
            self._observer.set_queue_depth(self._queue.qsize())
            if isinstance(first, _Stop):
                return
            batch, stopping = await self._collect(first)
            await self._run_batch(batch)
            if stopping:
                return

    async def _collect(self, first: PendingItem) -> tuple[list[PendingItem], bool]:
        """Add items to `first` until the batch is full or the first item's delay is used up."""
        batch = [first] if not first.future.done() else []
        deadline = first.enqueued_at + self._max_delay_s
        while len(batch) < self.max_batch_size:
            item = await self._next_item(deadline)
            if item is None:
                break
            if isinstance(item, _Stop):
                return batch, True
            if not item.future.done():  # the caller gave up (timeout or disconnect) while queued
                batch.append(item)
        return batch, False

    async def _next_item(self, deadline: float) -> PendingItem | _Stop | None:
        """The next queued item, waiting at most until `deadline` (monotonic) and only while images are announced;
        None when the time is up or nothing more is coming."""
        while self._queue.empty():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._incoming == 0:
                return None
            self._incoming_changed.clear()
            getter = asyncio.ensure_future(self._queue.get())
            changed = asyncio.ensure_future(self._incoming_changed.wait())
            done, _ = await asyncio.wait({getter, changed}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            changed.cancel()
            if getter in done:
                item = getter.result()
                break
            getter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await getter
            if getter.done() and not getter.cancelled():  # it got an item while being cancelled: keep it
                item = getter.result()
                break
        else:
            item = self._queue.get_nowait()
        self._observer.set_queue_depth(self._queue.qsize())
        return item

    def _outputs_for(self, items: Sequence[PendingItem]) -> list[str]:
        if self._attention_output is not None and any(item.attention for item in items):
            return [self._logits_output, self._attention_output]
        return [self._logits_output]

    async def _run_batch(self, items: list[PendingItem]) -> None:
        live = [item for item in items if not item.future.done()]
        if not live:
            return
        started = time.monotonic()
        for item in live:
            self._observer.observe_queue_wait(started - item.enqueued_at)
            tracing.record_queue_wait(item.trace, item.enqueued_at, started)
        self._in_flight = live  # stop() fails these if it has to cancel us mid-batch
        lone = self._is_lone(live)
        DynamicBatcher._batches_running += 1
        try:
            with tracing.batch_span(self.name, len(live), [item.trace for item in live]):
                outputs = await self._execute(live, lone)
        except Exception as exc:
            self._in_flight = []
            logger.error("engine failed on a batch of %d for %s", len(live), self.name, exc_info=exc)
            self._observer.observe_failure(len(live), time.monotonic() - started)
            for item in live:
                if not item.future.done():
                    error = EngineError(f"inference failed for model {self.name!r}: {exc}")
                    error.__cause__ = exc
                    item.future.set_exception(error)
            return
        finally:
            DynamicBatcher._batches_running -= 1
        self._in_flight = []
        self._observer.observe_batch(len(live), time.monotonic() - started)
        for row, item in enumerate(live):
            if item.future.done():
                continue
            wanted = outputs if item.attention else {self._logits_output: outputs[self._logits_output]}
            item.future.set_result({name: values[row] for name, values in wanted.items()})

    def _run_and_watch(self, batch: np.ndarray, names: list[str], lone: bool) -> Outputs:
        """The engine call (`run_lone` for a lone batch), then (same thread, off the event loop) the batch's logits
        to `on_logits`."""
        outputs = self._run_lone(batch, names) if lone else self._engine.run(batch, names)
        if self._on_logits is not None and self._logits_output in outputs:
            try:
                self._on_logits(outputs[self._logits_output])
            except Exception:  # watching must never fail an answer
                logger.exception("the label monitor of %s failed on a batch; the answers are unaffected", self.name)
        return outputs

    def _is_lone(self, items: list[PendingItem]) -> bool:
        """The server is idle but for this one image: nothing queued behind it or being decoded, no other request
        in flight, no other batch running (another model's, or a shadow's copy of this very image)."""
        return (len(items) == 1 and self._queue.empty() and self._incoming == 0
                and DynamicBatcher._batches_running == 0 and self._requests_in_flight() <= 1)

    async def _execute(self, items: list[PendingItem], lone: bool) -> Outputs:
        names = self._outputs_for(items)
        batch = np.stack([item.array for item in items])  # [B, 3, H, W]
        loop = asyncio.get_running_loop()
        outputs = await loop.run_in_executor(self._executor, self._run_and_watch, batch, names, lone)
        for name in names:
            if name not in outputs or len(outputs[name]) != len(items):
                shape = None if name not in outputs else outputs[name].shape
                raise EngineError(f"engine returned {name!r} of shape {shape} for a batch of {len(items)}")
        return outputs

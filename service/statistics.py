"""Triton's statistics extension for one served model version: counts and cumulative nanoseconds, kept in memory.

`GET /v2/models/{name}[/versions/{v}]/stats` answers in Triton's shape (so `tritonclient`'s
`get_inference_statistics` reads it), where every image is one inference: `success` and `queue` count images,
`compute_infer` charges each image the time of the batch it ran in (as Triton does), `batch_stats` has one entry per
batch size. Input and output copies are not timed separately here (they happen inside the engine call), so their
entries stay at zero. The per-label section (`label_stats`, `shadow`) is labelserve's own addition.
"""

from __future__ import annotations

import time
from typing import Any

from service.batching import BatchObserver

__all__ = ["FanoutObserver", "VersionStatistics"]

_NS = 1_000_000_000


def _duration(count: int = 0, ns: int = 0) -> dict[str, int]:
    return {"count": count, "ns": ns}


class VersionStatistics:
    """Counts of one version's images and batches, in Triton's terms; fed by its batcher (a `BatchObserver`)."""

    def __init__(self) -> None:
        self.inference_count = 0
        self.execution_count = 0
        self.last_inference_ms = 0
        self._success = [0, 0]
        self._fail = [0, 0]
        self._queue = [0, 0]
        self._infer = [0, 0]
        self._batches: dict[int, list[int]] = {}  # batch size -> [batches, ns]

    def observe_batch(self, size: int, inference_s: float) -> None:
        """One engine call of `size` images: each is a successful inference charged the batch's time."""
        ns = int(inference_s * _NS)
        self.inference_count += size
        self.execution_count += 1
        self.last_inference_ms = int(time.time() * 1000)
        self._success[0] += size
        self._success[1] += size * ns
        self._infer[0] += size
        self._infer[1] += size * ns
        entry = self._batches.setdefault(size, [0, 0])
        entry[0] += 1
        entry[1] += ns

    def observe_queue_wait(self, wait_s: float) -> None:
        """One image's wait for its batch, part of its successful inference's time."""
        ns = int(wait_s * _NS)
        self._queue[0] += 1
        self._queue[1] += ns
        self._success[1] += ns

    def set_queue_depth(self, depth: int) -> None:
        """Not part of Triton's statistics."""

    def observe_rejection(self, reason: str) -> None:
        """An image refused before it ran: a failed inference."""
        self._fail[0] += 1

    def observe_failure(self, size: int, seconds: float) -> None:
        """A batch of `size` images the engine failed on."""
        self._fail[0] += size
        self._fail[1] += size * int(seconds * _NS)

    def as_dict(self, name: str, version: int) -> dict[str, Any]:
        """This version's entry of `model_stats`."""
        return {
            "name": name, "version": str(version), "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count, "execution_count": self.execution_count,
            "inference_stats": {"success": _duration(*self._success), "fail": _duration(*self._fail),
                                "queue": _duration(*self._queue), "compute_input": _duration(),
                                "compute_infer": _duration(*self._infer), "compute_output": _duration(),
                                "cache_hit": _duration(), "cache_miss": _duration()},
            "batch_stats": [{"batch_size": size, "compute_input": _duration(), "compute_output": _duration(),
                             "compute_infer": _duration(count, ns)}
                            for size, (count, ns) in sorted(self._batches.items())],
        }


class FanoutObserver:
    """Passes every batcher event to several observers (Prometheus and the statistics extension)."""

    def __init__(self, *observers: BatchObserver) -> None:
        self._observers = observers

    def observe_batch(self, size: int, inference_s: float) -> None:
        """See `BatchObserver`."""
        for observer in self._observers:
            observer.observe_batch(size, inference_s)

    def observe_queue_wait(self, wait_s: float) -> None:
        """See `BatchObserver`."""
        for observer in self._observers:
            observer.observe_queue_wait(wait_s)

    def set_queue_depth(self, depth: int) -> None:
        """See `BatchObserver`."""
        for observer in self._observers:
            observer.set_queue_depth(depth)

    def observe_rejection(self, reason: str) -> None:
        """See `BatchObserver`."""
        for observer in self._observers:
            observer.observe_rejection(reason)

    def observe_failure(self, size: int, seconds: float) -> None:
        """See `BatchObserver`."""
        for observer in self._observers:
            observer.observe_failure(size, seconds)

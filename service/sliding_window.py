"""Sums of fixed-shape arrays over the last N items and T seconds, in a tenth-sized steps: what the label monitor
and the shadow comparison keep, in memory that does not grow with traffic.

The window is ten slices; the newest takes additions until it holds a tenth of `max_items` or is a tenth of
`max_age_s` old, then a new one starts and the eleventh-newest is dropped. Totals add the slices that ended within
`max_age_s`. So the window holds between nine and ten tenths of either bound, and slides by a tenth. Thread-safe:
additions come from engine threads, totals are read on the event loop.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["SlidingSums", "WindowTotals"]

SLICES = 10


@dataclass(frozen=True)
class WindowTotals:
    """What the window holds: items, the summed arrays, and the seconds from its oldest slice to now."""

    items: int
    sums: dict[str, np.ndarray]
    span_s: float


@dataclass
class _Slice:
    started: float
    ended: float
    items: int
    sums: dict[str, np.ndarray]


class SlidingSums:
    """Named arrays of fixed shapes (int64 or float64 sums) over the last `max_items` items and `max_age_s` s."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], max_items: int, max_age_s: float,
                 dtype: type = np.int64, clock: Callable[[], float] = time.monotonic) -> None:
        if max_items < 1 or max_age_s <= 0:
            raise ValueError(f"a window needs max_items >= 1 and max_age_s > 0, got {max_items}, {max_age_s}")
        self._shapes = shapes
        self._dtype = dtype
        self._clock = clock
        self.max_age_s = max_age_s
        self._slice_items = max(1, math.ceil(max_items / SLICES))
        self._slice_s = max_age_s / SLICES
        self._closed: deque[_Slice] = deque(maxlen=SLICES - 1)
        self._current = self._new_slice(clock())
        self._lock = threading.Lock()

    def _new_slice(self, now: float) -> _Slice:
        return _Slice(now, now, 0, {name: np.zeros(shape, self._dtype) for name, shape in self._shapes.items()})

    def add(self, items: int, **values: np.ndarray) -> None:
        """Add `items` items whose arrays sum to `values` (one array per name, of its shape)."""
        now = self._clock()
        with self._lock:
            current = self._current
            if current.items >= self._slice_items or now - current.started >= self._slice_s:
                self._closed.append(current)
                current = self._current = self._new_slice(now)
            for name, value in values.items():
                current.sums[name] += value
            current.items += items
            current.ended = now

    def totals(self) -> WindowTotals:
        """The sums over the slices that ended within `max_age_s` of now."""
        now = self._clock()
        with self._lock:
            live = [s for s in (*self._closed, self._current) if s.items and now - s.ended <= self.max_age_s]
            sums = {name: (np.sum([s.sums[name] for s in live], axis=0) if live else np.zeros(shape, self._dtype))
                    for name, shape in self._shapes.items()}
            return WindowTotals(sum(s.items for s in live), sums, now - live[0].started if live else 0.0)

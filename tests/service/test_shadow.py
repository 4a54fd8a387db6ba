"""A shadow version: copies only with spare capacity, never awaited by the primary, compared label by label."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Sequence

import numpy as np
import pytest

from service.batching import DynamicBatcher
from service.engines.base import EngineInfo
from service.observability import Metrics
from service.shadow import Shadow

LABELS = ("a", "b", "c")


class OffsetEngine:
    """Logits of an image: its first three pixel values plus a per-label offset (a "version" of a model)."""

    def __init__(self, offset: Sequence[float], gated: bool = False) -> None:
        self.offset = np.asarray(offset, dtype=np.float32)
        self.gate = threading.Event()
        if not gated:
            self.gate.set()

    @property
    def info(self) -> EngineInfo:
        return EngineInfo(name="offset", provider="cpu", max_batch_size=8)

    def load(self) -> None:
        """Nothing to load."""

    def run(self, batch: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        assert self.gate.wait(5.0)
        return {"logits": batch[:, 0, 0, :3] + self.offset}

    def close(self) -> None:
        """Nothing to free."""


def _batcher(engine: OffsetEngine, name: str) -> DynamicBatcher:
    return DynamicBatcher(engine, logits_output="logits", attention_output=None, max_batch_size=4,
                          max_queue_delay_ms=1.0, max_queue_size=4, observer=Metrics().observer(name, 1), name=name)


def _shadow(candidate: DynamicBatcher, share: float = 1.0) -> Shadow:
    return Shadow("m", 1, 2, candidate, LABELS, [0.5] * 3, [0.5] * 3, "logits", share, window_images=1000,
                  window_s=3600, rng=random.Random(0))


def test_a_comparison_counts_flips_at_each_versions_thresholds_and_the_probability_change() -> None:
    shadow = Shadow("m", 1, 2, None, LABELS, [0.5, 0.5, 0.9], [0.5, 0.5, 0.5], "logits", 1.0,  # type: ignore[arg-type]
                    window_images=100, window_s=60)
    shadow.compare(np.array([1.0, -1.0, 1.0]), np.array([-1.0, -1.0, 1.0]))  # a flips; c: 0.73 < 0.9 vs >= 0.5
    shadow.compare(np.array([1.0, -1.0, 3.0]), np.array([1.0, -1.0, 3.0]))
    report = {entry["name"]: entry for entry in shadow.report().labels}
    assert report["a"]["flip_rate"] == 0.5 and report["b"]["flip_rate"] == 0.0 and report["c"]["flip_rate"] == 0.5
    assert report["a"]["mean_change"] == pytest.approx((1 / (1 + np.e) - 1 / (1 + np.exp(-1))) / 2)
    assert shadow.report().labels[0]["name"] in ("a", "c")  # most flips first


def test_mirrored_images_are_compared_with_what_the_primary_answered() -> None:
    async def main() -> None:
        primary = _batcher(OffsetEngine([0.0, 0.0, 0.0]), "primary")
        candidate = _batcher(OffsetEngine([0.0, 0.0, -2.0]), "candidate")  # label c drops by 2 logits
        primary.start()
        candidate.start()
        shadow = _shadow(candidate)
        rng = np.random.default_rng(0)
        values = rng.uniform(-3, 3, size=(40, 3)).astype(np.float32)
        for row in values:
            image = np.zeros((3, 2, 4), np.float32)
            image[0, 0, :3] = row
            answer = primary.submit(image)
            shadow.mirror(image, answer, primary)
            await answer
            while candidate.pending:  # one at a time, the candidate idle again: spare capacity for every copy
                await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)  # the last comparison runs once both futures' callbacks have
        report = shadow.report()
        expected_c = float(np.mean((values[:, 2] >= 0) != (values[:, 2] - 2 >= 0)))
        flips = {entry["name"]: entry["flip_rate"] for entry in report.labels}
        assert report.compared == 40 and report.dropped_total == 0
        assert flips == {"a": 0.0, "b": 0.0, "c": pytest.approx(expected_c)} and expected_c > 0
        await primary.stop(1)
        await candidate.stop(1)

    asyncio.run(main())


def test_without_spare_capacity_the_copy_is_dropped_and_the_primary_never_waits() -> None:
    async def main() -> None:
        primary = _batcher(OffsetEngine([0.0] * 3), "primary")
        stuck = OffsetEngine([0.0] * 3, gated=True)  # the candidate never finishes its batch
        candidate = _batcher(stuck, "candidate")
        primary.start()
        candidate.start()
        shadow = _shadow(candidate)
        image = np.zeros((3, 2, 4), np.float32)
        for _ in range(12):
            answer = primary.submit(image)
            shadow.mirror(image, answer, primary)
            assert (await asyncio.wait_for(answer, 2.0))["logits"].shape == (3,)  # answered while the copy hangs
        report = shadow.report()
        assert (report.mirrored_total, report.dropped_total) == (1, 11)  # the candidate is busy after the first
        busy = [primary.submit(image) for _ in range(3)]  # the primary has more than the image being copied
        stuck.gate.set()
        shadow.mirror(image, busy[-1], primary)
        assert shadow.report().dropped_total == 12
        await asyncio.gather(*busy)
        await primary.stop(1)
        await candidate.stop(1)

    asyncio.run(main())


def test_only_the_configured_share_is_copied() -> None:
    async def main() -> None:
        primary = _batcher(OffsetEngine([0.0] * 3), "primary")
        candidate = _batcher(OffsetEngine([0.0] * 3), "candidate")
        primary.start()
        candidate.start()
        shadow = _shadow(candidate, share=0.25)
        image = np.zeros((3, 2, 4), np.float32)
        for _ in range(400):
            answer = primary.submit(image)
            shadow.mirror(image, answer, primary)
            await answer
            while candidate.pending:
                await asyncio.sleep(0.001)
        assert 60 <= shadow.report().mirrored_total <= 140 and shadow.report().dropped_total == 0
        await primary.stop(1)
        await candidate.stop(1)

    asyncio.run(main())

"""The one small interface every inference backend implements, and the warm-up every backend runs the same way."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from labelserve.bundle import Manifest
from labelserve.engine_errors import EngineLoadError

__all__ = ["Engine", "EngineInfo", "EngineLoadError", "LoneBatchEngine", "output_names", "warm_up"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineInfo:
    """What runs a model, for /models and the `labelserve_model_info` metric."""

    name: str
    provider: str
    max_batch_size: int


@runtime_checkable
class Engine(Protocol):
    """A loaded network that maps an input batch to named outputs.

    `run` is called from exactly one thread at a time (the batcher's executor thread), so implementations need not
    be thread-safe; `load` may block for as long as it takes and returns only once the engine is warm.
    """

    @property
    def info(self) -> EngineInfo:
        """Engine name, execution provider and the largest batch it accepts."""
        ...

    def load(self) -> None:
        """Build the runtime session and run warm-up batches, so the first request is not slow."""
        ...

    def run(self, batch: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Run one batch.

        Args:
            batch: preprocessed images, `[B, 3, H, W]` float32.
            outputs: which named outputs to compute and return (e.g. `("logits",)` or `("logits", "attention")`).

        Returns:
            Output name -> array whose first dimension is `B`.
        """
        ...

    def close(self) -> None:
        """Release what `load` took (sessions, GPU memory, streams) when the version is retired; called once, on
        the thread that ran the batches, after the last one."""
        ...


@runtime_checkable
class LoneBatchEngine(Protocol):
    """An engine with a faster way to run a batch of one that arrived at an idle server, where it may spend CPU that
    nothing else wants (onnxruntime on the CPU: a session whose threads spin within the batch)."""

    def run_lone(self, batch: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """`Engine.run` for a lone batch; the same outputs."""
        ...


def output_names(manifest: Manifest) -> list[str]:
    """Every output the network has: logits, then attention where exported."""
    outputs = manifest.outputs
    return [outputs.logits.name] + ([outputs.attention.name] if outputs.attention is not None else [])


def warm_up(engine: Engine, manifest: Manifest, source: Path) -> None:
    """Run zero batches of size 1 and of the engine's largest batch through every output, so the first request
    finds kernels chosen and memory allocated, and check the logits' shape against the manifest.

    Raises:
        EngineLoadError: a warm-up batch failed or gave logits of the wrong shape.
    """
    largest = engine.info.max_batch_size
    for batch_size in sorted({1, largest}):
        batch = np.zeros((batch_size, *manifest.input.shape), dtype=np.float32)
        try:
            outputs = engine.run(batch, output_names(manifest))
        except Exception as exc:
            raise EngineLoadError(f"warm-up at batch {batch_size} failed for {source}: {exc}") from exc
        logits = outputs[manifest.outputs.logits.name]
        if logits.shape != (batch_size, len(manifest.labels)):
            raise EngineLoadError(f"warm-up at batch {batch_size} gave logits of shape {logits.shape}, expected "
                                  f"{(batch_size, len(manifest.labels))}")
    logger.info("warmed up %s v%d on %s/%s (batch 1..%d)", manifest.name, manifest.version, engine.info.name,
                engine.info.provider, largest)

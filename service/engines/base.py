"""The one small interface every inference backend implements (onnxruntime now; TensorRT and torch later)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Engine", "EngineInfo", "EngineLoadError"]


class EngineLoadError(Exception):
    """An engine could not be created or warmed up (bad file, wrong inputs, missing runtime)."""


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

"""Label statistics of a training set that some heads are built from (the label co-occurrence graph)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LabelStatistics"]


@dataclass(frozen=True)
class LabelStatistics:
    """How often each label, and each pair of labels, occurs in the training images."""

    counts: np.ndarray  # [K] images holding label k
    cooccurrence: np.ndarray  # [K, K] images holding both i and j

    @classmethod
    def from_targets(cls, targets: np.ndarray) -> LabelStatistics:
        """Count from multi-hot targets `[N, K]`."""
        present = (np.asarray(targets) > 0.5).astype(np.float64)
        return cls(counts=present.sum(axis=0), cooccurrence=present.T @ present)

"""What every dataset reader returns: label names in column order and samples with multi-hot targets."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Box", "MultiLabelSample", "MultiLabelSet"]

Box = tuple[float, float, float, float]  # x, y, w, h in pixels of the original image


@dataclass(frozen=True)
class MultiLabelSample:
    """One image of a multi-label dataset."""

    path: Path
    target: np.ndarray  # [C] float32 in {0, 1}
    boxes: dict[int, list[Box]] = field(default_factory=dict)  # label index -> boxes, where the format has boxes
    size: tuple[int, int] | None = None  # (width, height) as recorded by the annotation file
    source: str = ""  # where the annotation names it, for messages: "train.csv:4", "instances.json image id 7"


@dataclass(frozen=True)
class MultiLabelSet:
    """A split: the label names (column order of every target) and its samples."""

    labels: tuple[str, ...]
    samples: tuple[MultiLabelSample, ...]

    def targets(self) -> np.ndarray:
        """All targets stacked, `[N, C]`."""
        return np.stack([s.target for s in self.samples]) if self.samples else np.zeros((0, len(self.labels)))

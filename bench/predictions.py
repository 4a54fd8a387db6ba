"""What one trained row predicted for every validation image, kept on disk so statistics over images and seeds
(bench/paired_bootstrap.py) can be recomputed without training again.

One compressed `.npz` per row and seed: probabilities `[N, C]` (float32, the numbers the row's mAP was computed
from), targets `[N, C]` (uint8), the label context's own probabilities where the head has them (Label2Label's
attribute-query network), served pointing-game hits and pairs per image where the data has boxes, and the training
split's positives per label (which labels are the tail).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["RowPredictions", "load_predictions", "save_predictions"]


@dataclass(frozen=True)
class RowPredictions:
    """Per-image outputs of one row and seed, rows in the validation split's order."""

    labels: tuple[str, ...]
    probs: np.ndarray  # [N, C] float32
    targets: np.ndarray  # [N, C] 0/1
    train_positives: np.ndarray  # [C] images of the training split holding each label
    aux_probs: np.ndarray | None = None  # [N, C] of the first auxiliary head
    pointing_hits: np.ndarray | None = None  # [N] served pointing-game hits per image
    pointing_pairs: np.ndarray | None = None  # [N] (present label, box) pairs per image

    def __post_init__(self) -> None:
        n, c = self.probs.shape
        if self.targets.shape != (n, c) or self.train_positives.shape != (c,) or len(self.labels) != c:
            raise ValueError(f"inconsistent shapes: probs {self.probs.shape}, targets {self.targets.shape}, "
                             f"train_positives {self.train_positives.shape}, {len(self.labels)} labels")
        for name in ("pointing_hits", "pointing_pairs"):
            value = getattr(self, name)
            if value is not None and value.shape != (n,):
                raise ValueError(f"{name} has shape {value.shape}, want ({n},)")


def save_predictions(path: Path, predictions: RowPredictions) -> Path:
    """Write `predictions` as a compressed npz (atomically: a run cut short leaves no half file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"labels": np.asarray(predictions.labels), "probs": predictions.probs.astype(np.float32),
              "targets": predictions.targets.astype(np.uint8),
              "train_positives": predictions.train_positives.astype(np.int64)}
    for name in ("aux_probs", "pointing_hits", "pointing_pairs"):
        value = getattr(predictions, name)
        if value is not None:
            arrays[name] = value.astype(np.float32 if name == "aux_probs" else np.int32)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return path


def load_predictions(path: Path) -> RowPredictions:
    """Read what `save_predictions` wrote."""
    with np.load(path, allow_pickle=False) as data:
        optional = {name: data[name] for name in ("aux_probs", "pointing_hits", "pointing_pairs") if name in data}
        return RowPredictions(labels=tuple(str(x) for x in data["labels"]), probs=data["probs"],
                              targets=data["targets"], train_positives=data["train_positives"], **optional)

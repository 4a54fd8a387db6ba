"""Per-epoch records of a run: metrics.csv, TensorBoard event files and the curves PNG, written as training goes."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from training.plots import plot_curves

__all__ = ["RunLog"]


class RunLog:
    """Appends one row per epoch; rewrites the CSV and the PNG each time so an interrupted run keeps its history."""

    def __init__(self, output_dir: Path, tensorboard: bool = True, history: list[dict[str, float]] | None = None):
        self.output_dir = output_dir
        self.history: list[dict[str, float]] = list(history or [])
        self._writer: Any = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imported lazily: tensorboard is heavy

            self._writer = SummaryWriter(log_dir=str(output_dir / "tensorboard"))

    def add(self, row: dict[str, float]) -> None:
        self.history.append(row)
        fields: list[str] = []
        for record in self.history:
            fields.extend(k for k in record if k not in fields)
        with (self.output_dir / "metrics.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(self.history)
        plot_curves(self.history, self.output_dir / "curves.png")
        if self._writer is not None:
            for key, value in row.items():
                if key != "epoch":
                    self._writer.add_scalar(key, value, int(row["epoch"]))
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

"""Training curves as a PNG, because people look at pictures, not CSV files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

__all__ = ["plot_curves"]


def plot_curves(history: list[dict[str, float]], path: Path) -> Path:
    """Plot train/val loss and mAP/CF1/OF1 per epoch from `history` rows (one dict per epoch) into `path`."""
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for key in ("train_loss", "val_loss"):
        if all(key in row for row in history):
            ax_loss.plot(epochs, [row[key] for row in history], marker="o", label=key)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    for key in ("mAP", "ema_mAP", "CF1", "OF1", "mA"):
        if all(key in row for row in history):
            ax_metric.plot(epochs, [100 * row[key] for row in history], marker="o", label=key)
    ax_metric.set(xlabel="epoch", ylabel="%", title="validation")
    ax_metric.legend()
    ax_metric.grid(alpha=0.3)
    for axis in (ax_loss, ax_metric):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

"""One epoch of training and one pass of evaluation, with progress bars."""

from __future__ import annotations

import math
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from training.metrics import mean_average_precision, threshold_metrics

__all__ = ["EvalResult", "Precision", "evaluate", "train_one_epoch"]


@dataclass(frozen=True)
class Precision:
    """Mixed-precision settings for one device: autocast dtype (None = fp32) and whether a grad scaler is needed."""

    dtype: torch.dtype | None

    @classmethod
    def for_device(cls, device: torch.device, amp: bool) -> Precision:
        if not amp or device.type != "cuda":
            return cls(None)
        return cls(torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)

    def autocast(self, device: torch.device) -> torch.autocast | nullcontext:
        return torch.autocast(device.type, dtype=self.dtype) if self.dtype is not None else nullcontext()

    @property
    def needs_scaler(self) -> bool:
        return self.dtype == torch.float16


@dataclass(frozen=True)
class EvalResult:
    """Validation metrics plus the raw scores they came from."""

    metrics: dict[str, float]
    probs: np.ndarray  # [N, C]
    targets: np.ndarray  # [N, C]


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
    precision: Precision,
    scaler: torch.amp.GradScaler,
    epoch: int,
    grad_clip_norm: float | None = None,
    show_progress: bool = True,
) -> float:
    """Train for one pass over `loader`; the scheduler steps every iteration (OneCycle). Returns the mean loss."""
    model.train()
    total, count = 0.0, 0
    bar = tqdm(loader, desc=f"epoch {epoch} train", leave=False, disable=not show_progress, dynamic_ncols=True)
    for images, targets in bar:
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        with precision.autocast(device):
            output = model(images)
        loss = criterion(output.logits.float(), targets)
        for aux in output.aux_logits:  # e.g. Label2Label's attribute-query logits, weighted 1 as the reference
            loss = loss + criterion(aux.float(), targets)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch}; lower optim.lr or enable clipping")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip_norm is not None:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        total += loss.item() * images.shape[0]
        count += images.shape[0]
        bar.set_postfix(loss=f"{total / count:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
    return total / max(count, 1)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    criterion: nn.Module,
    device: torch.device,
    precision: Precision,
    show_progress: bool = True,
) -> EvalResult:
    """Score every validation image and compute mAP, CP/CR/CF1/OP/OR/OF1 (threshold 0.5) and the loss."""
    model.eval()
    probs, targets, losses = [], [], []
    for images, target in tqdm(loader, desc="eval", leave=False, disable=not show_progress, dynamic_ncols=True):
        with precision.autocast(device):
            logits = model(images.to(device, non_blocking=True)).logits.float()
        losses.append(criterion(logits, target.to(device)).item() * images.shape[0])
        probs.append(torch.sigmoid(logits).cpu().numpy())
        targets.append(target.numpy())
    all_probs, all_targets = np.concatenate(probs), np.concatenate(targets)
    metrics: dict[str, float] = {"val_loss": sum(losses) / max(len(all_probs), 1)}
    result = mean_average_precision(all_probs, all_targets)
    metrics["mAP"] = float(result["map"]) if not math.isnan(float(result["map"])) else 0.0
    metrics.update(threshold_metrics(all_probs, all_targets, 0.5))
    return EvalResult(metrics, all_probs, all_targets)

"""One epoch of training and one pass of evaluation, with progress bars."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from timm.utils import ModelEmaV3
from torch import nn
from tqdm import tqdm

from training.evaluation import EvalScores
from training.models.base import ModelOutput
from training.optim import SAM

__all__ = ["Precision", "StepTools", "evaluate", "train_one_epoch"]


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


@dataclass
class StepTools:
    """What one optimisation step needs besides the model and the batch."""

    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    precision: Precision
    device: torch.device
    grad_clip_norm: float | None = None
    sam: SAM | None = None
    ema: ModelEmaV3 | None = None


def _loss(output: ModelOutput, targets: torch.Tensor, criterion: nn.Module) -> torch.Tensor:
    loss = criterion(output.logits.float(), targets)
    for aux in output.aux_logits:  # e.g. Label2Label's attribute-query logits, weighted 1 as the reference
        loss = loss + criterion(aux.float(), targets)
    return loss


def _backward_and_step(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, tools: StepTools) -> float:
    with tools.precision.autocast(tools.device):
        loss = _loss(model(images), targets, tools.criterion)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {loss.item()}; lower optim.lr or set optim.grad_clip_norm")
    tools.optimizer.zero_grad(set_to_none=True)
    tools.scaler.scale(loss).backward()
    if tools.sam is not None:  # second forward/backward at the perturbed weights (no fp16 scaler with SAM)
        tools.sam.ascend()
        with tools.precision.autocast(tools.device):
            _loss(model(images), targets, tools.criterion).backward()
    if tools.grad_clip_norm is not None:
        tools.scaler.unscale_(tools.optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), tools.grad_clip_norm)
    if tools.sam is not None:
        tools.sam.descend()
    else:
        tools.scaler.step(tools.optimizer)
        tools.scaler.update()
    tools.scheduler.step()
    if tools.ema is not None:
        tools.ema.update(model.module if hasattr(model, "module") else model)
    return loss.item()


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    tools: StepTools,
    epoch: int,
    show_progress: bool = True,
) -> tuple[float, int]:
    """Train for one pass over `loader`; the scheduler steps every iteration. Returns (mean loss, steps)."""
    model.train()
    total, count, steps = 0.0, 0, 0
    bar = tqdm(loader, desc=f"epoch {epoch} train", leave=False, disable=not show_progress, dynamic_ncols=True)
    for images, targets in bar:
        images = images.to(tools.device, non_blocking=True)
        targets = targets.to(tools.device, non_blocking=True)
        loss = _backward_and_step(model, images, targets, tools)
        total += loss * images.shape[0]
        count += images.shape[0]
        steps += 1
        bar.set_postfix(loss=f"{total / count:.4f}", lr=f"{tools.scheduler.get_last_lr()[0]:.2e}")
    return total / max(count, 1), steps


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    criterion: nn.Module,
    device: torch.device,
    precision: Precision,
    keep_attention: bool = False,
    show_progress: bool = True,
) -> EvalScores:
    """Score every validation image (in loader order); attention maps are kept only when asked (pointing game)."""
    model.eval()
    probs, targets, attention, aux, loss_sum = [], [], [], [], 0.0
    for images, target in tqdm(loader, desc="eval", leave=False, disable=not show_progress, dynamic_ncols=True):
        with precision.autocast(device):
            output = model(images.to(device, non_blocking=True))
        logits = output.logits.float()
        loss_sum += criterion(logits, target.to(device)).item() * images.shape[0]
        probs.append(torch.sigmoid(logits).cpu().numpy())
        targets.append(target.numpy())
        if output.aux_logits:
            aux.append(torch.sigmoid(output.aux_logits[0].float()).cpu().numpy())
        if keep_attention and output.attention is not None:
            attention.append(output.attention.float().cpu().numpy().astype(np.float16))
    all_probs = np.concatenate(probs)
    return EvalScores(
        probs=all_probs,
        targets=np.concatenate(targets),
        loss=loss_sum / max(len(all_probs), 1),
        attention=np.concatenate(attention) if attention else None,
        aux_probs=np.concatenate(aux) if aux else None,
    )

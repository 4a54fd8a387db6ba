"""Optimiser, schedule, sharpness-aware minimisation and the weight EMA (timm's ModelEmaV3)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from timm.utils import ModelEmaV3
from torch import nn

from training.config import OptimConfig

__all__ = ["SAM", "build_optimizer", "build_scheduler", "create_ema", "ema_state", "load_ema_state", "parameter_groups"]


def parameter_groups(model: nn.Module, weight_decay: float, no_decay_bias_norm: bool) -> list[dict]:
    """One group with decay, and (if asked) one without for biases and norm weights (all 1-D parameters)."""
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not no_decay_bias_norm:
        return [{"params": [p for _, p in trainable], "weight_decay": weight_decay}]
    decay = [p for name, p in trainable if p.ndim > 1 and not name.endswith(".bias")]
    no_decay = [p for name, p in trainable if p.ndim <= 1 or name.endswith(".bias")]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(config: OptimConfig, model: nn.Module) -> torch.optim.Optimizer:
    """AdamW or SGD (momentum) over `parameter_groups`."""
    groups = parameter_groups(model, config.weight_decay, config.no_decay_bias_norm)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    return torch.optim.AdamW(groups, lr=config.lr)


def build_scheduler(
    config: OptimConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-iteration schedule: OneCycle (Q2L, ASL) or linear warm-up + cosine to zero."""
    total = max(1, config.epochs * steps_per_epoch)
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total,
                                                   pct_start=config.pct_start, div_factor=config.onecycle_div_factor,
                                                   final_div_factor=config.onecycle_final_div_factor)
    warmup = int(config.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class SAM:
    """Sharpness-aware minimisation (Foret et al., 2021) around a base optimiser, non-adaptive.

    Usage per step: loss.backward(); sam.ascend(); second_loss.backward(); sam.descend(). The ascent moves the
    weights by rho * g / ||g||, the descent restores them and lets the base optimiser step with the gradient taken
    at the perturbed point.
    """

    def __init__(self, base: torch.optim.Optimizer, rho: float = 0.05) -> None:
        if rho <= 0:
            raise ValueError(f"SAM needs rho > 0, got {rho}")
        self.base = base
        self.rho = rho
        self._perturbations: dict[nn.Parameter, torch.Tensor] = {}

    def _params(self) -> Iterable[nn.Parameter]:
        for group in self.base.param_groups:
            yield from (p for p in group["params"] if p.grad is not None)

    @torch.no_grad()
    def ascend(self) -> None:
        grads = [p.grad.norm(p=2) for p in self._params()]
        norm = torch.norm(torch.stack(grads), p=2) if grads else torch.tensor(0.0)
        scale = self.rho / (norm + 1e-12)
        for p in self._params():
            step = p.grad * scale.to(p)
            p.add_(step)
            self._perturbations[p] = step
        self.base.zero_grad(set_to_none=True)

    @torch.no_grad()
    def descend(self, step: Callable[[], None] | None = None) -> None:
        for p, perturbation in self._perturbations.items():
            p.sub_(perturbation)
        self._perturbations.clear()
        (step or self.base.step)()


def create_ema(model: nn.Module, decay: float) -> ModelEmaV3:
    """timm's weight EMA of `model` (parameters and buffers, integer buffers copied), evaluated beside the raw model.

    Every optimiser step calls `ema.update(model)` without a step count, so the decay is constant, as in Q2L/ASL:
    ema = decay * ema + (1 - decay) * value. The copy's parameters need no gradients.
    """
    if not 0.0 < decay < 1.0:
        raise ValueError(f"ema_decay must be in (0, 1), got {decay}")
    ema = ModelEmaV3(model, decay=decay)
    for param in ema.module.parameters():
        param.requires_grad_(False)
    return ema


def ema_state(ema: ModelEmaV3) -> dict[str, torch.Tensor]:
    """What `last.pt` keeps: the averaged model's own state dict, keyed like the model (no `module.` prefix).

    This is the layout checkpoints had before timm's EMA, and the one best.pt's `model_state` needs when the EMA
    weights win, so old checkpoints resume and export reads either without translation.
    """
    return ema.module.state_dict()


def load_ema_state(ema: ModelEmaV3, state: dict[str, torch.Tensor]) -> None:
    """Restore what `ema_state` returned, or what the hand-written ModelEma wrote before it (the same layout)."""
    ema.module.load_state_dict(state)

"""Optimiser, schedule, sharpness-aware minimisation and the weight EMA."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from training.config import OptimConfig

__all__ = ["SAM", "ModelEma", "build_optimizer", "build_scheduler", "parameter_groups"]


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


class ModelEma:
    """Exponential moving average of a model's weights (and a copy of its buffers), kept on the same device.

    Float tensors follow ema = decay * ema + (1 - decay) * value after every optimiser step; integer buffers
    (BatchNorm's counters) are copied. As in Q2L/ASL the averaged model is evaluated beside the raw one.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay}")
        self.module = copy.deepcopy(model).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for ema_value, value in zip(self.module.state_dict().values(), model.state_dict().values(), strict=True):
            if ema_value.dtype.is_floating_point:
                ema_value.mul_(self.decay).add_(value.detach(), alpha=1.0 - self.decay)
            else:
                ema_value.copy_(value)

"""Multi-label losses on logits `[B, C]` and multi-hot targets `[B, C]`, built by name with `create_loss`."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

__all__ = ["AsymmetricAngularMarginLoss", "AsymmetricLoss", "BinaryCrossEntropy", "create_loss", "list_losses"]


class BinaryCrossEntropy(nn.Module):
    """Sigmoid binary cross-entropy averaged over every (image, label) pair."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, targets)


class AsymmetricLoss(nn.Module):
    """ASL (Ben-Baruch, Ridnik et al., ICCV 2021), with Query2Label's defaults.

    p = sigmoid(z); negatives use the shifted probability p_m = max(p - clip, 0);
    L = -sum[ y (1-p)^gamma_pos log p + (1-y) p_m^gamma_neg log(1-p_m) ], logs clamped at `eps`.

    Args:
        gamma_neg: focusing exponent on negatives (Q2L 2; the ASL repo's COCO run 4).
        gamma_pos: focusing exponent on positives (0 in both).
        clip: probability margin that discards easy negatives (Q2L 0; ASL 0.05).
        eps: clamp for the logarithms.
        detach_focal_weights: compute the focusing weights without gradient, as both official codes do.
        reduction: 'sum' (the ASL repo) or 'mean' over B*C (Query2Label).
        scale: multiplies the reduced loss; Query2Label uses mean * 1000.
    """

    def __init__(
        self,
        gamma_neg: float = 2.0,
        gamma_pos: float = 0.0,
        clip: float = 0.0,
        eps: float = 1e-5,
        detach_focal_weights: bool = True,
        reduction: Literal["sum", "mean"] = "mean",
        scale: float = 1000.0,
    ) -> None:
        super().__init__()
        if gamma_neg < 0 or gamma_pos < 0 or not 0 <= clip < 1:
            raise ValueError(f"need gamma_neg, gamma_pos >= 0 and 0 <= clip < 1, got {gamma_neg}, {gamma_pos}, {clip}")
        self.gamma_neg, self.gamma_pos, self.clip, self.eps = gamma_neg, gamma_pos, clip, eps
        self.detach_focal_weights = detach_focal_weights
        self.reduction = reduction
        self.scale = scale

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        prob_pos = torch.sigmoid(logits)
        prob_neg = 1.0 - prob_pos  # probability of "absent"
        if self.clip > 0:
            prob_neg = (prob_neg + self.clip).clamp(max=1.0)
        log_pos = torch.log(prob_pos.clamp(min=self.eps))
        log_neg = torch.log(prob_neg.clamp(min=self.eps))
        loss = targets * log_pos + (1 - targets) * log_neg
        if self.gamma_neg > 0 or self.gamma_pos > 0:
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.detach_focal_weights):
                p_true = prob_pos * targets + prob_neg * (1 - targets)  # probability given to the true state
                gamma = self.gamma_pos * targets + self.gamma_neg * (1 - targets)
                weight = torch.pow(1.0 - p_true, gamma)
            loss = loss * weight
        total = -loss.sum()
        if self.reduction == "mean":
            total = total / loss.numel()
        return total * self.scale


class AsymmetricAngularMarginLoss(nn.Module):
    """Asymmetric Angular Margin loss (Prokofiev & Sovrasov, arXiv 2209.06585) for cosine heads.

    Follows deep-object-reid's `AMBinaryLoss` (multilabel branch, c92f63d8). The head's logits are `s * cos(theta)`;
    p+ = sigmoid(s (cos - m)), p- = sigmoid(-s (cos + m)). When a gamma is positive, p- is shifted,
    p- <- min(p- + clip, 1) (ASL's probability margin: it enters the negatives' log too), and the focusing weights
    are w = p-^gamma_pos for positives and p+^gamma_neg for negatives (not detached); otherwise w = 1. Then
    L = -sum_{b,j} w [ (k/s) y log p+ + ((1-k)/s) (1-y) log p- ], summed over the batch as the reference does
    (`reduction="batchmean"` divides by the batch size). Targets < 0 are ignored.

    Args:
        scale: the head's logit scale s (training passes the head's own value, so the two cannot disagree).
        margin: angular margin m (0.35 in the reference class; the released configs use 0).
        k: positive/negative balance (SphereFace2 style; 0.8 in the class, 0.7 in the released configs).
        gamma_pos: focusing exponent on positives (0 in the released configs).
        gamma_neg: focusing exponent on negatives (0 in the released configs).
        clip: probability shift of p- (0.05, the reference's default; used only when a gamma is positive).
        reduction: `sum` over images and labels (the reference) or `batchmean` (the sum divided by the batch size).
    """

    def __init__(
        self, scale: float, margin: float = 0.35, k: float = 0.8, gamma_pos: float = 0.0, gamma_neg: float = 0.0,
        clip: float = 0.05, reduction: Literal["sum", "batchmean"] = "sum",
    ) -> None:
        super().__init__()
        if scale <= 0 or not 0 < k < 1:
            raise ValueError(f"need scale > 0 and 0 < k < 1, got scale={scale}, k={k}")
        if gamma_pos < 0 or gamma_neg < 0 or not 0 <= clip < 1:
            raise ValueError(f"need gammas >= 0 and 0 <= clip < 1, got {gamma_pos}, {gamma_neg}, {clip}")
        if reduction not in ("sum", "batchmean"):
            raise ValueError(f"reduction must be 'sum' or 'batchmean', got {reduction!r}")
        self.scale, self.margin, self.k = scale, margin, k
        self.gamma_pos, self.gamma_neg, self.clip = gamma_pos, gamma_neg, clip
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        s = self.scale
        cos = logits.float() / s
        known = (targets >= 0).float()  # the reference drops entries with a negative target
        targets = targets.float().clamp(min=0.0)
        log_pos = F.logsigmoid(s * (cos - self.margin))
        log_neg = F.logsigmoid(-s * (cos + self.margin))
        weight = known
        if self.gamma_pos > 0 or self.gamma_neg > 0:
            prob_neg = log_neg.exp()
            if self.clip > 0:
                prob_neg = (prob_neg + self.clip).clamp(max=1.0)
                log_neg = torch.log(prob_neg)
            base = prob_neg * targets + log_pos.exp() * (1 - targets)
            weight = weight * torch.pow(base, self.gamma_pos * targets + self.gamma_neg * (1 - targets))
        loss = (self.k / s) * targets * log_pos + ((1 - self.k) / s) * (1 - targets) * log_neg
        total = -(loss * weight).sum()
        return total / logits.shape[0] if self.reduction == "batchmean" else total


_LOSSES: dict[str, type[nn.Module]] = {
    "bce": BinaryCrossEntropy, "asl": AsymmetricLoss, "aam": AsymmetricAngularMarginLoss,
}


def list_losses() -> list[str]:
    """Names `create_loss` accepts."""
    return sorted(_LOSSES)


def create_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build a loss by name with its keyword arguments."""
    try:
        cls = _LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(list_losses())}") from None
    return cls(**kwargs)

"""The `linear` baseline: global average pooling + one fully connected layer.

Its per-label maps are class activation maps (the classifier applied at every position, softmax-normalised over
positions), so the baseline can be compared with the attention heads on the pointing game and in the service.
"""

from __future__ import annotations

import torch
from torch import nn

from training.models.base import ModelOutput
from training.models.registry import register_head

__all__ = ["LinearHead"]


@register_head("linear")
class LinearHead(nn.Module):
    """Global average pool -> dropout -> Linear(in_channels, num_classes)."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.init_kwargs = {"dropout": dropout}
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, features: torch.Tensor) -> ModelOutput:
        pooled = features.mean(dim=(2, 3))  # [B, Cin]
        logits = self.fc(self.dropout(pooled))
        batch, _, height, width = features.shape
        cam = torch.einsum("bchw,kc->bkhw", features, self.fc.weight)  # [B, K, h, w]
        attention = torch.softmax(cam.flatten(2), dim=-1).reshape(batch, -1, height, width)
        return ModelOutput(logits, attention)

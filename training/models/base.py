"""The model every head plugs into: backbone feature map -> head -> logits (+ per-label attention maps)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from training.models.backbone import Backbone

__all__ = ["ModelOutput", "MultiLabelModel"]


class ModelOutput(NamedTuple):
    """What every head returns.

    Attributes:
        logits: the prediction `[B, C]` (probabilities are their sigmoid).
        attention: per-label maps `[B, C, h, w]` over the feature map (each sums to 1), or None.
        aux_logits: intermediate predictions that training also supervises (Label2Label's initial logits);
            the exported model returns only `logits` and `attention`.
    """

    logits: torch.Tensor
    attention: torch.Tensor | None
    aux_logits: tuple[torch.Tensor, ...] = ()


class MultiLabelModel(nn.Module):
    """Backbone + head. Heads take `[B, channels, h, w]` and return a ModelOutput.

    Args:
        backbone: the feature extractor.
        head: a registered head built for `backbone.channels` inputs.
        config: the arguments `create_model` was called with, saved in checkpoints to rebuild the model.
    """

    def __init__(self, backbone: Backbone, head: nn.Module, config: dict) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.config = config

    @property
    def num_classes(self) -> int:
        return int(self.config["num_classes"])

    def forward(self, images: torch.Tensor) -> ModelOutput:
        return self.head(self.backbone(images))

"""timm backbone by name, reduced to the one feature map a multi-label head attends over."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

__all__ = ["Backbone"]


class Backbone(nn.Module):
    """A timm model in `features_only` mode that returns one feature map `[B, channels, h, w]`.

    Args:
        name: any timm model name that supports `features_only` (`resnet50`, `tresnet_l`, `convnext_tiny`...).
        pretrained: load timm's pretrained weights (from the hub cache, or `checkpoint_path`).
        checkpoint_path: a local weights file for the backbone, for machines without access to the hub.
        feature_index: which stage to use; -1 is the last (stride 32 on most CNNs), -2 the one before (stride 16).
        **timm_kwargs: passed to `timm.create_model` (e.g. `drop_path_rate`).
    """

    def __init__(
        self,
        name: str,
        pretrained: bool = False,
        checkpoint_path: str | Path | None = None,
        feature_index: int = -1,
        **timm_kwargs: Any,
    ) -> None:
        super().__init__()
        if checkpoint_path is not None:
            if not Path(checkpoint_path).is_file():
                raise FileNotFoundError(f"backbone checkpoint {checkpoint_path} does not exist")
            pretrained = True
            timm_kwargs["pretrained_cfg_overlay"] = {"file": str(checkpoint_path)}
        self.name = name
        self.body = timm.create_model(
            name, pretrained=pretrained, features_only=True, out_indices=(feature_index,), **timm_kwargs
        )
        self.channels: int = self.body.feature_info.channels()[-1]
        self.reduction: int = self.body.feature_info.reduction()[-1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """`[B, 3, H, W]` -> `[B, channels, H / reduction, W / reduction]`."""
        return self.body(images)[-1]

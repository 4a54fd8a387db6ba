"""timm backbone by name, reduced to the one feature map a multi-label head attends over."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from training.models.pretrained import load_packaged_weights, resolve_pretrained_source

__all__ = ["Backbone"]


def _drop_unused_blocks(body: nn.Module) -> None:
    """Cut the blocks after the last returned stage from timm's EfficientNet/MobileNet feature models.

    Their `features_only` wrapper runs every block and keeps only the requested outputs, so an earlier stage still
    paid for the later ones (about 30 % of EfficientNet-Lite0's compute at its stride-16 stage), in training and in
    the exported graph. timm's ResNet-style wrappers already stop at the last returned stage.
    """
    stage_ends = getattr(body, "_stage_out_idx", None)  # {blocks run before the output: output index}
    blocks = getattr(body, "blocks", None)
    if not stage_ends or not isinstance(blocks, nn.Sequential) or getattr(body, "feature_hooks", None) is not None:
        return
    needed = max(stage_ends)
    if needed < len(blocks):
        body.blocks = blocks[:needed]


class Backbone(nn.Module):
    """A timm model in `features_only` mode that returns one feature map `[B, channels, h, w]`.

    Args:
        name: any timm model name that supports `features_only` (`resnet50`, `tresnet_l`, `convnext_tiny`...).
        pretrained: start from pretrained weights (from `pretrained_source`, or `checkpoint_path`).
        pretrained_source: `auto` (the hub if it answers, else packaged weights for this backbone), `timm` (the hub
            or its cache), or a packaged source by name (`training.models.pretrained.PACKAGED_WEIGHTS`).
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
        pretrained_source: str = "auto",
        **timm_kwargs: Any,
    ) -> None:
        super().__init__()
        packaged = None
        if checkpoint_path is not None:
            if not Path(checkpoint_path).is_file():
                raise FileNotFoundError(f"backbone checkpoint {checkpoint_path} does not exist")
            pretrained = True
            timm_kwargs["pretrained_cfg_overlay"] = {"file": str(checkpoint_path)}
        elif pretrained:
            packaged = resolve_pretrained_source(name, pretrained_source)
        self.name = name
        self.body = timm.create_model(
            name, pretrained=pretrained and packaged is None, features_only=True, out_indices=(feature_index,),
            **timm_kwargs,
        )
        if packaged is not None:
            load_packaged_weights(self.body, packaged)
        self.packaged_weights = packaged  # their preprocessing (mean, std) is what the data config should use
        _drop_unused_blocks(self.body)
        self.channels: int = self.body.feature_info.channels()[-1]
        self.reduction: int = self.body.feature_info.reduction()[-1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """`[B, 3, H, W]` -> `[B, channels, H / reduction, W / reduction]`."""
        return self.body(images)[-1]

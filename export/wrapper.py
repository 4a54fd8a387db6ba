"""The exported graph's signature: `images [N, 3, H, W]` -> `logits [N, C]` (+ `attention [N, C, h, w]`)."""

from __future__ import annotations

import torch
from torch import nn

from training.models import MultiLabelModel

__all__ = ["ExportWrapper"]


class ExportWrapper(nn.Module):
    """Turns the model's NamedTuple output into the plain tuple of tensors the ONNX graph returns."""

    def __init__(self, model: MultiLabelModel, with_attention: bool = True) -> None:
        super().__init__()
        self.model = model
        self.with_attention = with_attention
        self.eval()  # dropout off, and the exporter sees an inference-mode module

    def output_names(self) -> list[str]:
        return ["logits", "attention"] if self.with_attention else ["logits"]

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        output = self.model(images)
        if self.with_attention:
            if output.attention is None:
                raise ValueError("this head returns no attention maps; export with with_attention=False")
            return output.logits, output.attention
        return (output.logits,)

"""Image -> tensor transforms for training and evaluation.

Evaluation is exactly `labelserve.preprocess` (the spec that ships in the bundle), so the metrics measured here are
the metrics the service delivers. Training adds augmentation on top; it is training's own business.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image, ImageOps

from labelserve.preprocess import PreprocessSpec, preprocess

__all__ = ["Transform", "eval_transform", "train_transform"]

Transform = Callable[[Image.Image], torch.Tensor]


def eval_transform(spec: PreprocessSpec) -> Transform:
    """The bundle's preprocessing as a torch transform."""

    def apply(image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(preprocess(image, spec))

    return apply


def train_transform(spec: PreprocessSpec, hflip: bool = True) -> Transform:
    """Squash resize (as Query2Label and ASL train) plus a random horizontal flip.

    Randomness comes from torch's generator, which the DataLoader seeds differently in every worker.

    Args:
        spec: the preprocessing spec the model will be exported with.
        hflip: flip half of the images left-right.
    """

    def apply(image: Image.Image) -> torch.Tensor:
        if hflip and torch.rand(()) < 0.5:
            image = ImageOps.mirror(image)
        return torch.from_numpy(preprocess(image, spec))

    return apply

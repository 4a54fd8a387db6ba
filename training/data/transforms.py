"""Image -> tensor transforms for training and evaluation.

Evaluation is exactly `labelserve.preprocess` (the spec that ships in the bundle), so the metrics measured here are
the metrics the service delivers. Training resizes the same way, once, and adds augmentation on top, as the
references do: random horizontal flip, optional RandAugment and Cutout.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image, ImageDraw, ImageOps
from torchvision.transforms import RandAugment

from labelserve.preprocess import PreprocessSpec, normalise, preprocess, resize

__all__ = ["Transform", "cutout", "eval_transform", "train_transform"]

Transform = Callable[[Image.Image], torch.Tensor]


def eval_transform(spec: PreprocessSpec) -> Transform:
    """The bundle's preprocessing as a torch transform."""

    def apply(image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(preprocess(image, spec))

    return apply


def cutout(image: Image.Image, fraction: float) -> Image.Image:
    """Fill one random square of side `fraction * min(width, height)` with a random colour (ASL's CutoutPIL).

    The side is a fraction of the image, not a pixel count, so the hole is never the 1-2 px that Query2Label's
    default produces (query2labels issue #35).
    """
    side = max(1, round(fraction * min(image.size)))
    x = int(torch.randint(0, image.width, ()))
    y = int(torch.randint(0, image.height, ()))
    colour = tuple(int(c) for c in torch.randint(0, 256, (3,)))
    left, top = x - side // 2, y - side // 2  # the square may overlap the border
    box = (left, top, left + side - 1, top + side - 1)  # Pillow's rectangle includes both corners
    out = image.copy()
    ImageDraw.Draw(out).rectangle(box, fill=colour)
    return out


def train_transform(
    spec: PreprocessSpec, hflip: bool = True, randaugment: bool = False, cutout_fraction: float = 0.0
) -> Transform:
    """The spec's resize (squash or centre crop), then flip / Cutout (p 0.5) / RandAugment(2, 9), then normalise.

    The image is resized once, exactly as evaluation and the service resize it, so without augmentation a training
    input equals the evaluation input. Randomness comes from torch's generator, which the DataLoader seeds
    differently in every worker.
    """
    augment = RandAugment(num_ops=2, magnitude=9) if randaugment else None

    def apply(image: Image.Image) -> torch.Tensor:
        image = resize(image.convert("RGB"), spec)
        if hflip and torch.rand(()) < 0.5:
            image = ImageOps.mirror(image)
        if cutout_fraction > 0 and torch.rand(()) < 0.5:
            image = cutout(image, cutout_fraction)
        if augment is not None:
            image = augment(image)
        return torch.from_numpy(normalise(image, spec))

    return apply

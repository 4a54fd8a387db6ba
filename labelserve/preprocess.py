"""The one definition of the transform from a decoded RGB image to the network input.

Training's evaluation transform, the export parity check and the service all call `preprocess`, with the spec
stored in the bundle manifest, so a model is always fed exactly what it was evaluated on. NumPy and Pillow only:
the service must not need torch for this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "PreprocessSpec", "ResizePlan", "normalisation", "normalise", "preprocess",
           "resize", "resize_plan"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_PIL_INTERPOLATION = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


class PreprocessSpec(BaseModel):
    """How a decoded RGB image becomes a float32 `[3, height, width]` array.

    `squash` resizes straight to (height, width), ignoring aspect ratio, as Query2Label and ASL train and evaluate;
    `center_crop` resizes the shorter side to `size / crop_pct` and crops the centre, as timm's eval transform does.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    height: int = Field(gt=0, le=4096)
    width: int = Field(gt=0, le=4096)
    resize: Literal["squash", "center_crop"] = "squash"
    crop_pct: float = Field(default=0.875, gt=0.0, le=1.0)
    interpolation: Literal["nearest", "bilinear", "bicubic"] = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    channel_order: Literal["RGB"] = "RGB"
    layout: Literal["NCHW"] = "NCHW"
    dtype: Literal["float32"] = "float32"

    @field_validator("std")
    @classmethod
    def _std_positive(cls, std: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(std) <= 0:
            raise ValueError(f"std must be positive in every channel, got {std}")
        return std

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of one preprocessed image, `(3, height, width)`."""
        return (3, self.height, self.width)


@dataclass(frozen=True)
class ResizePlan:
    """Where an image of some size goes: resized to (width, height), then cropped at (left, top) to the spec's size."""

    width: int
    height: int
    left: int
    top: int


def resize_plan(width: int, height: int, spec: PreprocessSpec) -> ResizePlan:
    """The resize (and crop, for `center_crop`) that takes a `width` x `height` image to the spec's size."""
    if spec.resize == "squash":
        return ResizePlan(spec.width, spec.height, 0, 0)
    scale = max(spec.height, spec.width) / spec.crop_pct / min(width, height)
    scaled_w = max(spec.width, round(width * scale))
    scaled_h = max(spec.height, round(height * scale))
    return ResizePlan(scaled_w, scaled_h, (scaled_w - spec.width) // 2, (scaled_h - spec.height) // 2)


def resize(image: Image.Image, spec: PreprocessSpec) -> Image.Image:
    """Resize (and crop, for `center_crop`) an RGB image to the spec's height and width."""
    plan = resize_plan(image.width, image.height, spec)
    scaled = image.resize((plan.width, plan.height), _PIL_INTERPOLATION[spec.interpolation])
    if spec.resize == "squash":
        return scaled
    return scaled.crop((plan.left, plan.top, plan.left + spec.width, plan.top + spec.height))


def normalisation(spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (offset, scale) in 0..255 units, float32: the input is `(pixels - offset) / scale`."""
    return (np.asarray(spec.mean, dtype=np.float32) * 255.0, np.asarray(spec.std, dtype=np.float32) * 255.0)


def normalise(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """An RGB image already at the spec's size -> `[3, H, W]` float32, normalised per channel.

    The second half of `preprocess`, for callers that resize themselves (training augments between the two halves;
    resizing again would crop a `center_crop` image twice).
    """
    if image.size != (spec.width, spec.height):
        raise ValueError(f"normalise expects a {spec.width}x{spec.height} image, got {image.width}x{image.height}; "
                         "resize it first (or call preprocess)")
    pixels = np.asarray(image, dtype=np.float32)  # [H, W, 3], 0..255
    offset, scale = normalisation(spec)
    normalised = (pixels - offset) / scale
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


def preprocess(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """Turn a decoded image into the network input `[3, H, W]` float32: `resize`, then `normalise`.

    Args:
        image: a decoded Pillow image; converted to RGB if it is in another mode.
        spec: the bundle's preprocessing spec.
    """
    if image.mode != "RGB":
        image = image.convert("RGB")
    return normalise(resize(image, spec), spec)

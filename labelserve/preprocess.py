"""The one definition of the transform from a decoded RGB image to the network input.

Training's evaluation transform, the export parity check and the service all call `preprocess`, with the spec
stored in the bundle manifest, so a model is always fed exactly what it was evaluated on. NumPy and Pillow only:
the service must not need torch for this.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "PreprocessSpec", "ResizePlan", "dct_scale_factor", "normalisation",
           "normalise", "preprocess", "resize", "resize_plan"]

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
    With `jpeg_dct_scaling`, a JPEG at least twice as large as the resize needs is decoded at 1/2, 1/4 or 1/8 scale
    by libjpeg's scaled IDCT (Pillow's `draft`) before the resize: a 640x480 photo for a 224 px network costs about
    a third less to decode and resize. Training decodes the same way, so the model sees no difference.
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
    jpeg_dct_scaling: bool = False  # False for bundles exported before it existed: they were evaluated without it

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


def dct_scale_factor(width: int, height: int, spec: PreprocessSpec) -> int:
    """By how much (1, 2, 4 or 8) a JPEG of `width` x `height` pixels (as displayed, after EXIF orientation) is
    scaled down in the DCT while decoding: the largest factor that still leaves the resize at least the pixels it
    takes (Pillow's `draft` rule); 1 where the spec does not ask for it."""
    if not spec.jpeg_dct_scaling:
        return 1
    plan = resize_plan(width, height, spec)
    room = min(width // plan.width, height // plan.height)
    return next((factor for factor in (8, 4, 2) if room >= factor), 1)


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


@functools.lru_cache(maxsize=32)
def _normalised_levels(spec: PreprocessSpec) -> np.ndarray:
    """`[3, 256]` float32: channel c's normalised value of each 8-bit level, computed with the same float32
    operations as `(pixels - offset) / scale`, so looking values up gives that formula's result bit for bit."""
    offset, scale = normalisation(spec)
    levels = np.arange(256, dtype=np.float32)[None, :]  # [1, 256]
    return np.ascontiguousarray((levels - offset[:, None]) / scale[:, None])


def normalise(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """An RGB image already at the spec's size -> `[3, H, W]` float32, normalised per channel.

    The second half of `preprocess`, for callers that resize themselves (training augments between the two halves;
    resizing again would crop a `center_crop` image twice).
    """
    if image.size != (spec.width, spec.height):
        raise ValueError(f"normalise expects a {spec.width}x{spec.height} image, got {image.width}x{image.height}; "
                         "resize it first (or call preprocess)")
    if image.mode != "RGB":
        image = image.convert("RGB")
    # A table lookup per channel: a fifth of the time of the float arithmetic on every pixel, identical values.
    levels = _normalised_levels(spec)
    out = np.empty((3, spec.height, spec.width), dtype=np.float32)
    for channel, band in enumerate(image.split()):
        np.take(levels[channel], np.asarray(band), out=out[channel])  # uint8 [H, W] -> float32 [H, W]
    return out


def preprocess(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """Turn a decoded image into the network input `[3, H, W]` float32: `resize`, then `normalise`.

    Args:
        image: a decoded Pillow image; converted to RGB if it is in another mode.
        spec: the bundle's preprocessing spec.
    """
    if image.mode != "RGB":
        image = image.convert("RGB")
    return normalise(resize(image, spec), spec)

"""Pillow's resize as two integer matrices, so the resize of `labelserve.preprocess` can run as matrix products on a
GPU and still give Pillow's pixels.

Pillow resamples 8-bit images in two separable passes, horizontal then vertical: each output pixel is a weighted
sum over the filter's support around its centre, the weights normalised to sum to one and turned into 22-bit
fixed-point integers, the sum rounded and clipped to 8 bits after each pass. `resample_matrix` holds exactly those
integer weights and `resize_like_pillow` applies them with the same rounding. Float64 products of 8-bit pixels and
22-bit weights are exact integers, so nothing is approximated.

One known difference: Pillow 13 runs the vertical pass first when the height shrinks much more than the width (a
speed-up, python-pillow/Pillow#9549); the rounding between passes then differs by a level here and there. Photos and
scenes resized to a model's input do not take that branch; the tests hold both facts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import TypeVar

import numpy as np

__all__ = ["PRECISION_BITS", "RESAMPLE_FILTERS", "resample_matrix", "resize_like_pillow", "round_like_pillow"]

PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed-point precision for 8-bit images

ArrayT = TypeVar("ArrayT")  # a NumPy array or a torch tensor


def _bilinear(x: float) -> float:
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


def _bicubic(x: float) -> float:
    a = -0.5  # Pillow's choice; torch and OpenCV use -0.75, which is why their bicubic differs from Pillow's
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


RESAMPLE_FILTERS: dict[str, tuple[Callable[[float], float], float]] = {
    "bilinear": (_bilinear, 1.0),
    "bicubic": (_bicubic, 2.0),
}


@lru_cache(maxsize=256)
def resample_matrix(in_size: int, out_size: int, interpolation: str) -> np.ndarray:
    """`[out_size, in_size]` float64 holding Pillow's integer weights (each row sums to about 2**22); read-only.

    Raises:
        ValueError: an interpolation Pillow does not resample by convolution (nearest is a lookup).
    """
    if interpolation not in RESAMPLE_FILTERS:
        raise ValueError(f"no resampling matrix for {interpolation!r}; one of {sorted(RESAMPLE_FILTERS)}")
    kernel, support = RESAMPLE_FILTERS[interpolation]
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support *= filter_scale
    inverse = 1.0 / filter_scale
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    for out_index in range(out_size):
        centre = (out_index + 0.5) * scale
        first = max(int(centre - support + 0.5), 0)  # int() truncates toward zero, as Pillow's C cast does
        last = min(int(centre + support + 0.5), in_size)
        weights = [kernel((x - centre + 0.5) * inverse) for x in range(first, last)]
        total = sum(weights)
        if total != 0.0:
            weights = [w / total for w in weights]
        # half away from zero, as Pillow's normalize_coeffs_8bpc rounds
        matrix[out_index, first:last] = [math.trunc(w * (1 << PRECISION_BITS) + (0.5 if w >= 0 else -0.5))
                                         for w in weights]
    matrix.setflags(write=False)
    return matrix


def round_like_pillow(sums: ArrayT) -> ArrayT:
    """Fixed-point sums -> 8-bit values: add half, shift right (floor), clip to 0..255, as Pillow's clip8 does.

    Operators and `.clip` only, so NumPy arrays and torch tensors (on any device) take the same code.
    """
    return ((sums + float(1 << (PRECISION_BITS - 1))) // float(1 << PRECISION_BITS)).clip(0, 255)


def resize_like_pillow(pixels: np.ndarray, width: int, height: int, interpolation: str) -> np.ndarray:
    """`[H, W, C]` uint8 -> `[height, width, C]` float64 with Pillow's classic two-pass result (values 0..255)."""
    in_height, in_width = pixels.shape[:2]
    result = pixels.astype(np.float64)
    if width != in_width:
        result = round_like_pillow(np.einsum("xw,hwc->hxc", resample_matrix(in_width, width, interpolation), result))
    if height != in_height:
        result = round_like_pillow(np.einsum("yh,hwc->ywc", resample_matrix(in_height, height, interpolation),
                                             result))
    return result

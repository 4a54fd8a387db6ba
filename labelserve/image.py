"""The one conversion from a decoded Pillow image to the RGB image that `preprocess` takes, for training and serving.

Training's `load_rgb`, the export parity check and the service's decoder all end here, so an image file becomes the
same pixels on every path. Pillow's own `convert("RGB")` clips 16-bit greyscale (PNG and TIFF depth maps, medical
and scientific images) to white; here it is scaled to 8 bits instead. JPEGs are decoded at the DCT scale the
preprocessing spec allows (`dct_scale_factor`) on every path alike. NumPy and Pillow only (no torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from labelserve.preprocess import PreprocessSpec, dct_scale_factor

__all__ = ["SIXTEEN_BIT_MODES", "decode_at_dct_scale", "display_size", "open_rgb", "to_rgb"]

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_EXIF_ORIENTATION = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB; 16-bit greyscale is rescaled by 255/65535 (rounded), not clipped."""
    if image.mode == "RGB":
        return image
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float32)  # [H, W], 0..65535
        grey = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")  # uint8 [H, W] -> mode L -> RGB
    return image.convert("RGB")


def display_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of an opened image as it is shown, after its EXIF orientation (read from the header)."""
    width, height = image.size
    if image.getexif().get(_EXIF_ORIENTATION, 1) in _TRANSPOSING_ORIENTATIONS:
        return height, width
    return width, height


def decode_at_dct_scale(image: Image.Image, spec: PreprocessSpec) -> int:
    """Before its pixels are loaded, make an opened JPEG decode at the spec's DCT scale (Pillow's `draft`); returns
    the factor (1: full size, also for every other format)."""
    if image.format != "JPEG":
        return 1
    factor = dct_scale_factor(*display_size(image), spec)
    if factor > 1:
        width, height = image.size
        image.draft(None, (width // factor, height // factor))  # Pillow picks exactly `factor` for this request
    return factor


def open_rgb(source: str | Path | BinaryIO, spec: PreprocessSpec | None = None) -> Image.Image:
    """Read an image file (a path or a binary file object) as the service reads an upload: first frame, at the spec's
    DCT scale for JPEGs when given, EXIF orientation applied, `to_rgb`."""
    with Image.open(source) as image:
        if spec is not None:
            decode_at_dct_scale(image, spec)
        return to_rgb(ImageOps.exif_transpose(image))

"""The one conversion from a decoded Pillow image to the RGB image that `preprocess` takes, for training and serving.

Training's `load_rgb`, the export parity check and the service's decoder all end here, so an image file becomes the
same pixels on every path. Pillow's own `convert("RGB")` clips 16-bit greyscale (PNG and TIFF depth maps, medical
and scientific images) to white; here it is scaled to 8 bits instead. NumPy and Pillow only (no torch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

__all__ = ["SIXTEEN_BIT_MODES", "open_rgb", "to_rgb"]

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB; 16-bit greyscale is rescaled by 255/65535 (rounded), not clipped."""
    if image.mode == "RGB":
        return image
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float32)  # [H, W], 0..65535
        grey = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")  # uint8 [H, W] -> mode L -> RGB
    return image.convert("RGB")


def open_rgb(path: str | Path) -> Image.Image:
    """Read an image file as the service reads an upload: first frame, EXIF orientation applied, `to_rgb`."""
    with Image.open(path) as image:
        return to_rgb(ImageOps.exif_transpose(image))

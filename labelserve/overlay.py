"""Attention maps as the API returns them, decoded and drawn over their image (no torch: NumPy and Pillow).

`decode_attention` is the one place that knows the wire encoding of a map (today a base64 8-bit greyscale PNG at
the image's aspect ratio), so a change of encoding is a change here.
"""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
from PIL import Image, ImageOps

__all__ = ["attention_overlay", "decode_attention"]

# A perceptually ordered dark-to-bright heat ramp (black, purple, red, orange, pale yellow), interpolated to 256.
_ANCHORS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float64)
_RAMP = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_ANCHORS)), _ANCHORS[:, channel])
                  for channel in range(3)], axis=1).round().astype(np.uint8)  # [256, 3]


def decode_attention(encoded: str) -> np.ndarray:
    """One attention map of a `/predict` answer -> uint8 `[H, W]`, 255 where the label's attention peaks.

    Raises:
        ValueError: the value is not a base64 PNG.
    """
    try:
        with Image.open(io.BytesIO(base64.b64decode(encoded, validate=True))) as image:
            return np.asarray(image.convert("L"), dtype=np.uint8)
    except (binascii.Error, OSError) as exc:
        raise ValueError(f"not an attention map (base64 PNG): {exc}") from exc


def attention_overlay(image: Image.Image, attention: np.ndarray, opacity: float = 0.6) -> Image.Image:
    """`image` (EXIF orientation applied, as the service decodes it) with `attention` drawn over it as heat.

    The map is resized to the image bilinearly; each pixel mixes in the heat colour by `opacity * attention`, so
    unattended regions keep the photo and attended ones glow.
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    base = ImageOps.exif_transpose(image).convert("RGB")
    resized = Image.fromarray(attention).resize(base.size, Image.Resampling.BILINEAR)
    weights = np.asarray(resized, dtype=np.float32)[..., None] / 255.0 * opacity  # [H, W, 1]
    heat = _RAMP[np.asarray(resized)].astype(np.float32)  # [H, W, 3]
    mixed = np.asarray(base, dtype=np.float32) * (1.0 - weights) + heat * weights
    return Image.fromarray(np.clip(mixed.round(), 0, 255).astype(np.uint8))

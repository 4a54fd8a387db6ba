"""Decoded image -> network input, by the bundle's own spec (never re-typed here)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from labelserve.preprocess import PreprocessSpec, preprocess

__all__ = ["to_network_input"]


def to_network_input(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """`labelserve.preprocess.preprocess` with the manifest's spec: `[3, H, W]` float32, C-contiguous."""
    array = preprocess(image, spec)
    if array.shape != spec.shape:
        raise ValueError(f"preprocess returned shape {array.shape}, the manifest expects {spec.shape}")
    return array

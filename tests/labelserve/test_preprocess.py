"""The one preprocessing definition: shapes, normalisation, resize policies, validation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from labelserve.preprocess import PreprocessSpec, preprocess, resize


def test_output_is_normalised_chw_float32() -> None:
    spec = PreprocessSpec(height=8, width=12, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    image = Image.new("RGB", (30, 20), (255, 0, 128))
    out = preprocess(image, spec)
    assert out.shape == (3, 8, 12) and out.dtype == np.float32
    expected = (np.array([255, 0, 128]) / 255.0 - 0.5) / 0.25
    np.testing.assert_allclose(out[:, 4, 6], expected, atol=1e-5)


def test_non_rgb_modes_are_converted() -> None:
    spec = PreprocessSpec(height=4, width=4)
    gray = preprocess(Image.new("L", (10, 10), 100), spec)
    rgb = preprocess(Image.new("RGB", (10, 10), (100, 100, 100)), spec)
    np.testing.assert_allclose(gray, rgb, atol=1e-6)


def test_squash_ignores_aspect_ratio() -> None:
    spec = PreprocessSpec(height=10, width=10, resize="squash")
    assert resize(Image.new("RGB", (100, 20)), spec).size == (10, 10)


def test_center_crop_keeps_the_middle() -> None:
    spec = PreprocessSpec(height=10, width=10, resize="center_crop", crop_pct=1.0, interpolation="nearest")
    pixels = np.zeros((20, 60, 3), dtype=np.uint8)
    pixels[:, 20:40] = 255  # white middle third, black sides
    out = np.asarray(resize(Image.fromarray(pixels), spec))
    assert out.shape == (10, 10, 3)
    assert out.min() == 255  # the crop fell entirely inside the white middle


def test_invalid_specs_are_refused() -> None:
    with pytest.raises(ValidationError):
        PreprocessSpec(height=0, width=10)
    with pytest.raises(ValidationError):
        PreprocessSpec(height=10, width=10, std=(0.2, 0.0, 0.2))
    with pytest.raises(ValidationError):
        PreprocessSpec(height=10, width=10, interpolation="lanczos")

"""The one preprocessing definition: shapes, normalisation, resize policies, validation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from labelserve.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PreprocessSpec,
    dct_scale_factor,
    normalisation,
    normalise,
    preprocess,
    resize,
    resize_plan,
)


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


@pytest.mark.parametrize(("size", "spec_kwargs", "factor"), [
    ((640, 480), {}, 2),  # 640 // 224 = 2, 480 // 224 = 2
    ((1792, 1792), {}, 8),
    ((1791, 1792), {}, 4),  # one pixel short of 8x on one side
    ((447, 1000), {}, 1),  # under twice the input on one side
    ((640, 480), {"jpeg_dct_scaling": False}, 1),
    ((1000, 1000), {"resize": "center_crop"}, 2),  # the crop resizes to 256 first: 1000 // 256 = 3 -> 2
    ((2048, 1024), {"resize": "center_crop"}, 4),  # shorter side to 256: 1024 // 256 = 4
])
def test_dct_scale_factor_leaves_the_resize_enough_pixels(size: tuple[int, int], spec_kwargs: dict,
                                                          factor: int) -> None:
    spec = PreprocessSpec(height=224, width=224, **{"jpeg_dct_scaling": True, **spec_kwargs})
    assert dct_scale_factor(*size, spec) == factor
    plan = resize_plan(*size, spec)
    assert size[0] // factor >= plan.width and size[1] // factor >= plan.height


@pytest.mark.parametrize(("mean", "std"), [(IMAGENET_MEAN, IMAGENET_STD), ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
                                           ((0.0, 0.1, 0.9), (1.0, 0.3, 0.07))])
def test_normalise_by_table_equals_the_formula_bit_for_bit(mean: tuple, std: tuple) -> None:
    spec = PreprocessSpec(height=16, width=48, mean=mean, std=std)
    levels = np.arange(16 * 48 * 3, dtype=np.int64).reshape(16, 48, 3) % 256  # every level in every channel
    image = Image.fromarray(levels.astype(np.uint8))
    offset, scale = normalisation(spec)
    formula = ((np.asarray(image, dtype=np.float32) - offset) / scale).transpose(2, 0, 1)
    out = normalise(image, spec)
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.shape == (3, 16, 48)
    assert np.array_equal(out, formula)

"""Pillow's resize as integer matrices gives Pillow's own pixels, which is what lets the torch JPEG path on a GPU
feed a model exactly what training evaluated it on."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from labelserve.resample import resample_matrix, resize_like_pillow, round_like_pillow

_PILLOW = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def _pillow(pixels: np.ndarray, width: int, height: int, interpolation: str) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).resize((width, height), _PILLOW[interpolation]), dtype=np.float64)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize("size", [(128, 128), (224, 224), (448, 384), (96, 160), (1000, 700), (640, 99), (13, 427)])
def test_photos_resize_exactly_as_pillow_does(sample_photos: list[Image.Image], size: tuple[int, int],
                                              interpolation: str) -> None:
    for photo in sample_photos:
        pixels = np.asarray(photo.convert("RGB"))
        np.testing.assert_array_equal(resize_like_pillow(pixels, *size, interpolation),
                                      _pillow(pixels, *size, interpolation))


def test_noise_and_odd_sizes_resize_exactly_as_pillow_does() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        in_h, in_w = rng.integers(5, 120, 2)
        out_w, out_h = int(in_w * rng.uniform(0.3, 3.0)) + 1, int(in_h * rng.uniform(0.3, 3.0)) + 1
        if out_h < in_h and out_h * in_w < out_w * in_h:
            continue  # Pillow 13's vertical-first branch, below
        pixels = rng.integers(0, 256, (int(in_h), int(in_w), 3), dtype=np.uint8)
        for interpolation in _PILLOW:
            np.testing.assert_array_equal(resize_like_pillow(pixels, out_w, out_h, interpolation),
                                          _pillow(pixels, out_w, out_h, interpolation))


def test_the_known_difference_is_pillows_vertical_first_pass() -> None:
    """Pillow 13 resizes vertically first when the height shrinks much more than the width (python-pillow/Pillow#9549);
    the rounding between the passes then differs. This pins the explanation: the same matrices in that order give
    Pillow's pixels again. Should Pillow change, this test says where to look."""
    pixels = np.random.default_rng(1).integers(0, 256, (427, 640, 3), dtype=np.uint8)
    expected = _pillow(pixels, 1000, 50, "bilinear")
    assert not np.array_equal(resize_like_pillow(pixels, 1000, 50, "bilinear"), expected)
    vertical_first = round_like_pillow(np.einsum("yh,hwc->ywc", resample_matrix(427, 50, "bilinear"),
                                                 pixels.astype(np.float64)))
    both = round_like_pillow(np.einsum("xw,hwc->hxc", resample_matrix(640, 1000, "bilinear"), vertical_first))
    np.testing.assert_array_equal(both, expected)


def test_matrix_rows_are_normalised_fixed_point_weights() -> None:
    matrix = resample_matrix(640, 128, "bicubic")
    assert matrix.shape == (128, 640)
    assert np.all(np.abs(matrix.sum(axis=1) - (1 << 22)) <= matrix.shape[1])  # one unit of rounding per tap at most
    assert not matrix.flags.writeable  # cached and shared: nobody may change it
    with pytest.raises(ValueError, match="nearest"):
        resample_matrix(10, 5, "nearest")

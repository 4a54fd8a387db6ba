"""No training/serving skew: an image file becomes the same network input on both paths.

Training evaluates with `load_rgb` + `eval_transform`; the service decodes uploaded bytes with `decode_image` and
preprocesses with `to_network_input`. The metrics measured in training are only the service's metrics if these
agree, including for the awkward files: EXIF-rotated phone JPEGs, PNGs with alpha, greyscale and palette images,
and 16-bit greyscale PNG/TIFF (which Pillow's own RGB conversion clips to white), and with specs that decode large
JPEGs at a DCT scale (both of the service's JPEG decoders against training's Pillow draft).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labelserve.bundle import Bundle
from labelserve.preprocess import PreprocessSpec
from service.pipeline import DecodeLimits, decode_image, to_network_input
from training.data.dataset import load_rgb
from training.data.transforms import eval_transform

_LIMITS = DecodeLimits(max_image_bytes=50_000_000, max_image_pixels=50_000_000)
_EXIF_ORIENTATION = 0x0112


def _awkward_files(photo: Image.Image, root: Path) -> list[Path]:
    rotated = root / "phone_rotated.jpg"
    exif = Image.Exif()
    exif[_EXIF_ORIENTATION] = 6  # "rotate 90 CW to display"
    photo.save(rotated, quality=90, exif=exif)
    alpha = root / "alpha.png"
    rgba = photo.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(alpha)
    grey = root / "grey.png"
    photo.convert("L").save(grey)
    palette = root / "palette.gif"
    photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(palette)
    return [rotated, alpha, grey, palette, *_sixteen_bit_files(photo, root)]


def _sixteen_bit_files(photo: Image.Image, root: Path) -> list[Path]:
    """The photo as 16-bit greyscale (full 0..65535 range, low byte kept busy), as PNG and as TIFF."""
    grey = np.asarray(photo.convert("L"), dtype=np.int64)
    busy_low_byte = np.arange(grey.size).reshape(grey.shape) % 200
    deep = np.minimum(grey * 257 + busy_low_byte, 65535).astype(np.uint16)
    paths = [root / "depth16.png", root / "depth16.tif"]
    for path in paths:
        Image.fromarray(deep).save(path)  # uint16 [H, W] -> mode I;16
    return paths


def _spec_variants(spec: PreprocessSpec) -> dict[str, PreprocessSpec]:
    """The bundle's spec, and DCT-scaled variants (the 640x427 photos are 5-10x the 64 px input: factor 4)."""
    return {"bundle": spec, "dct squash": spec.model_copy(update={"jpeg_dct_scaling": True}),
            "dct center_crop": spec.model_copy(update={"jpeg_dct_scaling": True, "resize": "center_crop"})}


@pytest.mark.parametrize("variant", ["bundle", "dct squash", "dct center_crop"])
def test_training_and_service_preprocess_every_file_identically(tiny_bundle: Bundle, photo_dir: Path,
                                                                 tiny_dataset: Path, sample_photos: list[Image.Image],
                                                                 tmp_path: Path, variant: str) -> None:
    spec = _spec_variants(tiny_bundle.manifest.input)[variant]
    files = [*sorted(photo_dir.glob("*.jpg")), *sorted((tiny_dataset / "images" / "val").glob("*.jpg"))[:4],
             *_awkward_files(sample_photos[0], tmp_path)]
    training_view = eval_transform(spec)
    for path in files:
        trained_on = training_view(load_rgb(str(path), spec)).numpy()
        for fast_jpeg in (True, False):  # simplejpeg and Pillow
            served = to_network_input(decode_image(path.read_bytes(), path.name, _LIMITS, fast_jpeg, spec), spec)
            assert served.shape == trained_on.shape == spec.shape
            assert np.abs(served - trained_on).max() <= 1e-5, (path.name, fast_jpeg)


def test_dct_scaling_really_decodes_smaller_on_both_paths(tiny_bundle: Bundle, sample_photos: list[Image.Image],
                                                          tmp_path: Path) -> None:
    spec = _spec_variants(tiny_bundle.manifest.input)["dct squash"]
    rotated = _awkward_files(sample_photos[0], tmp_path)[0]  # 640x427 stored, shown 427x640
    plain = tmp_path / "plain.jpg"
    sample_photos[0].save(plain, quality=90)
    assert load_rgb(str(plain), spec).size == decode_image(plain.read_bytes(), "p", _LIMITS, True, spec).size == (
        160, 107)  # ceil(640 / 4) x ceil(427 / 4)
    assert load_rgb(str(rotated), spec).size == decode_image(rotated.read_bytes(), "r", _LIMITS, True, spec).size == (
        107, 160)
    assert load_rgb(str(plain)).size == (640, 427)  # without a spec: full size


def test_exif_rotation_is_applied_on_both_paths(sample_photos: list[Image.Image], tmp_path: Path) -> None:
    rotated = _awkward_files(sample_photos[0], tmp_path)[0]
    width, height = sample_photos[0].size
    assert load_rgb(str(rotated)).size == (height, width)
    assert decode_image(rotated.read_bytes(), rotated.name, _LIMITS).size == (height, width)


def test_sixteen_bit_greyscale_is_scaled_alike_on_both_paths(sample_photos: list[Image.Image],
                                                              tmp_path: Path) -> None:
    expected = np.asarray(sample_photos[0].convert("L"))
    for path in _sixteen_bit_files(sample_photos[0], tmp_path):
        with Image.open(path) as raw:
            assert raw.mode.startswith("I"), raw.mode  # really 16-bit on disk
        trained = np.asarray(load_rgb(str(path)))
        served = np.asarray(decode_image(path.read_bytes(), path.name, _LIMITS))
        assert np.array_equal(served, trained), path.name
        assert np.abs(trained[..., 0].astype(int) - expected).max() <= 1, path.name  # scaled, not clipped to white


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "CMYK"])
def test_every_mode_converts_like_training(sample_photos: list[Image.Image], tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"image.{'jpg' if mode in ('L', 'CMYK') else 'png'}"
    sample_photos[1].convert(mode).save(path)
    served = np.asarray(decode_image(path.read_bytes(), path.name, _LIMITS))
    assert np.array_equal(served, np.asarray(load_rgb(str(path))))

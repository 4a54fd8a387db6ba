"""No training/serving skew: an image file becomes the same network input on both paths.

Training evaluates with `load_rgb` + `eval_transform`; the service decodes uploaded bytes with `decode_image` and
preprocesses with `to_network_input`. The metrics measured in training are only the service's metrics if these
agree, including for the awkward files: EXIF-rotated phone JPEGs, PNGs with alpha, greyscale and palette images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labelserve.bundle import Bundle
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
    return [rotated, alpha, grey, palette]


def test_training_and_service_preprocess_every_file_identically(tiny_bundle: Bundle, photo_dir: Path,
                                                                 tiny_dataset: Path, sample_photos: list[Image.Image],
                                                                 tmp_path: Path) -> None:
    spec = tiny_bundle.manifest.input
    files = [*sorted(photo_dir.glob("*.jpg")), *sorted((tiny_dataset / "images" / "val").glob("*.jpg"))[:4],
             *_awkward_files(sample_photos[0], tmp_path)]
    training_view = eval_transform(spec)
    for path in files:
        trained_on = training_view(load_rgb(str(path))).numpy()
        served = to_network_input(decode_image(path.read_bytes(), path.name, _LIMITS), spec)
        assert served.shape == trained_on.shape == spec.shape
        assert np.abs(served - trained_on).max() <= 1e-5, path.name


def test_exif_rotation_is_applied_on_both_paths(sample_photos: list[Image.Image], tmp_path: Path) -> None:
    rotated = _awkward_files(sample_photos[0], tmp_path)[0]
    width, height = sample_photos[0].size
    assert load_rgb(str(rotated)).size == (height, width)
    assert decode_image(rotated.read_bytes(), rotated.name, _LIMITS).size == (height, width)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "CMYK"])
def test_every_mode_converts_like_training(sample_photos: list[Image.Image], tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"image.{'jpg' if mode in ('L', 'CMYK') else 'png'}"
    sample_photos[1].convert(mode).save(path)
    served = np.asarray(decode_image(path.read_bytes(), path.name, _LIMITS))
    assert np.array_equal(served, np.asarray(load_rgb(str(path))))

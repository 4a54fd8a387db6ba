"""LABELSERVE_JPEG_DECODE=torch: plain JPEGs decoded by TorchCodec and resized with Pillow's own weights as matrix
products give the Pillow path's network input bit for bit on the CPU; everything else still goes through Pillow with
the same answers and errors; on a GPU (nvJPEG) the answers stay close (skipped here, saying why)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from service_testing import Reference, assert_error, image_parts
from starlette.testclient import TestClient

from labelserve.preprocess import PreprocessSpec
from service.app import create_app
from service.pipeline import DecodeLimits, decode_image, to_network_input
from service.pipeline.torch_jpeg import TorchJpegPreprocessor
from service.settings import Settings

Images = list[tuple[str, bytes]]
_LIMITS = DecodeLimits(max_image_bytes=50_000_000, max_image_pixels=50_000_000)
_SPECS = [
    PreprocessSpec(height=128, width=128),
    PreprocessSpec(height=224, width=224, resize="center_crop"),
    PreprocessSpec(height=384, width=288, interpolation="bicubic"),
    PreprocessSpec(height=160, width=160, interpolation="bicubic", resize="center_crop", crop_pct=0.95),
]


def _jpeg(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("spec", _SPECS, ids=lambda s: f"{s.height}x{s.width}-{s.resize}-{s.interpolation}")
def test_on_the_cpu_the_network_input_is_the_pillow_paths_bit_for_bit(spec: PreprocessSpec, photo_jpegs: Images,
                                                                       val_jpegs: Images,
                                                                       sample_photos: list[Image.Image]) -> None:
    greyscale = [("grey.jpg", _jpeg(sample_photos[0].convert("L")))]
    preprocessor = TorchJpegPreprocessor(spec, torch.device("cpu"))
    for name, data in photo_jpegs + val_jpegs[:4] + greyscale:
        expected = to_network_input(decode_image(data, name, _LIMITS), spec)
        got = preprocessor(data)
        assert got is not None and got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, expected, err_msg=name)


def test_what_it_cannot_do_exactly_is_left_to_pillow(photo_jpegs: Images) -> None:
    spec = PreprocessSpec(height=64, width=64)
    preprocessor = TorchJpegPreprocessor(spec, torch.device("cpu"))
    data = photo_jpegs[0][1]
    assert preprocessor(data[: len(data) // 2]) is None  # truncated: Pillow answers 400 for it
    assert preprocessor(b"not a jpeg at all \xff\xd9") is None  # TorchCodec refuses it
    with pytest.raises(ValueError, match="nearest"):
        TorchJpegPreprocessor(spec.model_copy(update={"interpolation": "nearest"}), torch.device("cpu"))


def _awkward(sample_photos: list[Image.Image]) -> Images:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    png = io.BytesIO()
    sample_photos[1].save(png, "PNG")
    return [("rotated.jpg", _jpeg(sample_photos[0], exif=exif)), ("cmyk.jpg", _jpeg(sample_photos[1].convert("CMYK"))),
            ("photo.png", png.getvalue())]


def test_the_service_answers_as_with_pillow(model_repository: Path, val_jpegs: Images, photo_jpegs: Images,
                                            sample_photos: list[Image.Image], reference: Reference) -> None:
    settings = Settings(model_repository=model_repository, jpeg_decode="torch", torch_device="cpu")
    images = val_jpegs[:4] + photo_jpegs + _awkward(sample_photos)
    with TestClient(create_app(settings)) as client:
        response = client.post("/predict", files=image_parts(*images))
        assert response.status_code == 200, response.text
        truncated = client.post("/predict", files=image_parts(("cut.jpg", photo_jpegs[0][1][:5000])))
    for result, (name, data) in zip(response.json()["results"], images, strict=True):
        expected = reference(data)
        got = {label["name"]: label["probability"] for label in result["labels"]}
        assert max(abs(got[label] - expected[label]) for label in expected) <= 1e-5, name
    assert_error(truncated, 400, "invalid_image", "truncated")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here; this checks a machine without one")
def test_a_missing_cuda_device_stops_the_start_with_the_reason(model_repository: Path) -> None:
    settings = Settings(model_repository=model_repository, jpeg_decode="torch", torch_device="cuda:0")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        create_app(settings)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (nvJPEG); none is visible to torch")
def test_nvjpeg_on_the_gpu_stays_within_a_level_of_libjpeg_turbo(photo_jpegs: Images, val_jpegs: Images) -> None:
    spec = _SPECS[0]
    on_gpu = TorchJpegPreprocessor(spec, torch.device("cuda"))
    one_level = 1.0 / (255.0 * min(spec.std))
    for name, data in photo_jpegs + val_jpegs[:4]:
        expected = to_network_input(decode_image(data, name, _LIMITS), spec)
        got = on_gpu(data)
        assert got is not None
        difference = np.abs(got - expected)
        assert difference.max() <= 3 * one_level + 1e-6, name  # IDCTs differ; colours must not
        assert difference.mean() <= 0.5 * one_level, name

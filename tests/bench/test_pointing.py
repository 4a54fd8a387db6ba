"""bench/pointing.py scores exactly the attention maps `/predict` returns, and counts hits against boxes."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image
from starlette.testclient import TestClient

from bench.pointing import SERVED_MAX_SIDE, _hits, brightest_point, open_bundle, served_pointing_game
from labelserve.bundle import Bundle
from service.app import create_app
from service.pipeline import DecodeLimits, decode_image, to_network_input
from service.pipeline.postprocess import attention_size, upsample_attention
from service.settings import Settings
from training.data.readers import read_split
from training.data.samples import MultiLabelSample

_LIMITS = DecodeLimits(max_image_bytes=10_000_000, max_image_pixels=10_000_000)


def test_the_scored_maps_peak_where_the_served_maps_peak(model_repository: Path, tiny_bundle: Bundle,
                                                         photo_jpegs: list[tuple[str, bytes]]) -> None:
    name, data = photo_jpegs[0]  # 640x427: maps are upsampled to 128x85, the service's default size
    with TestClient(create_app(Settings(model_repository=model_repository))) as client:
        served = client.post("/predict", files=[("files", (name, data, "image/jpeg"))],
                             data={"attention": "true", "threshold": "0"}).json()["results"][0]["attention"]
    manifest = tiny_bundle.manifest
    image = decode_image(data, name, _LIMITS)
    session = ort.InferenceSession(str(tiny_bundle.file("model.onnx")), providers=["CPUExecutionProvider"])
    maps = session.run(["attention"], {manifest.input_name: to_network_input(image, manifest.input)[None]})[0][0]
    size = attention_size(image.size, SERVED_MAX_SIDE)
    for label, encoded in served.items():
        png = np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))))
        ours = upsample_attention(maps[manifest.labels.index(label)], size)
        assert png.shape == ours.shape
        row, col = brightest_point(ours)
        assert png[row, col] == 255, label  # the pixel the bench scores is the brightest one users see


def test_a_peak_inside_the_box_is_a_hit_and_outside_a_miss() -> None:
    sample = MultiLabelSample(path=Path("x.jpg"), target=np.array([1.0, 1.0, 0.0], dtype=np.float32),
                              boxes={0: [(0.0, 0.0, 40.0, 40.0)], 1: [(60.0, 60.0, 30.0, 30.0)]}, size=(100, 100))
    maps = np.zeros((3, 4, 4), dtype=np.float32)
    maps[0, 0, 0] = 1.0  # top-left cell: label 0's box
    maps[1, 0, 3] = 1.0  # top-right cell: not label 1's box (bottom-right)
    maps[2, 3, 3] = 1.0  # label 2 is absent: not counted
    assert _hits(sample, maps, (100, 100), 512) == (1, 2)
    maps[1] = 0.0
    maps[1, 3, 3] = 1.0
    assert _hits(sample, maps, (100, 100), 512) == (2, 2)


def test_a_flat_top_points_at_the_cell_centre_not_the_image_corner() -> None:
    """A peak in the corner cell of a 4x4 map, upsampled to 64x64, is flat from the border to the cell centre."""
    maps = np.zeros((4, 4), dtype=np.float32)
    maps[0, 0] = 1.0
    values = upsample_attention(maps, (64, 64))
    assert np.unravel_index(int(np.argmax(values)), values.shape) == (0, 0)  # the first maximum: the very corner
    assert brightest_point(values) == (7, 7)  # the cell centre (7.5, 7.5) side of the flat top
    maps = np.zeros((4, 4), dtype=np.float32)
    maps[1, 2] = 1.0  # an inner cell has one brightest pixel, at its centre
    assert brightest_point(upsample_attention(maps, (64, 64))) in {(23, 39), (24, 40), (23, 40), (24, 39)}


def test_served_pointing_game_counts_every_boxed_label(model_repository: Path, tiny_dataset: Path) -> None:
    annotations = tiny_dataset / "annotations" / "instances_val.json"
    result = served_pointing_game(open_bundle(model_repository / "tiny"), annotations)
    data = read_split("coco", annotations)
    pairs = sum(len([k for k in np.flatnonzero(s.target > 0.5) if s.boxes.get(int(k))]) for s in data.samples)
    assert result["pairs"] == pairs > 0
    assert 0.0 <= result["pointing_game"] <= 1.0

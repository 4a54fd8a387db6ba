"""A model whose spec decodes large JPEGs at a DCT scale, served by the real app: every answer equals training's
view of the same file (`load_rgb` at that scale + `preprocess` + a plain onnxruntime session), and reports the
photo's own size, not the reduced one it was decoded at."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from service_testing import copy_model, image_parts
from starlette.testclient import TestClient

from labelserve.bundle import MANIFEST_FILENAME, load_bundle
from labelserve.preprocess import dct_scale_factor, preprocess
from service.app import create_app
from service.settings import Settings
from training.data.dataset import load_rgb


def test_dct_scaled_model_answers_like_training_sees_the_photos(model_repository: Path, photo_dir: Path,
                                                                tmp_path: Path) -> None:
    version = copy_model(model_repository / "tiny" / "1", tmp_path, "dct", 1)
    manifest = json.loads((version / MANIFEST_FILENAME).read_text(encoding="utf-8"))
    manifest["input"]["jpeg_dct_scaling"] = True
    (version / MANIFEST_FILENAME).write_text(json.dumps(manifest), encoding="utf-8")
    bundle = load_bundle(version)
    spec = bundle.manifest.input
    session = ort.InferenceSession(str(bundle.file("model.onnx")), providers=["CPUExecutionProvider"])
    photos = sorted(photo_dir.glob("*.jpg"))
    with TestClient(create_app(Settings(model_repository=tmp_path))) as client:
        response = client.post("/predict", files=image_parts(*[(p.name, p.read_bytes()) for p in photos]))
    assert response.status_code == 200, response.text
    for path, result in zip(photos, response.json()["results"], strict=True):
        image = load_rgb(str(path), spec)
        assert dct_scale_factor(640, 427, spec) == 4 and image.size == (160, 107)  # really decoded smaller
        logits = session.run(["logits"], {"images": preprocess(image, spec)[None]})[0][0]
        expected = dict(zip(bundle.manifest.labels, 1 / (1 + np.exp(-logits.astype(np.float64))), strict=True))
        got = {label["name"]: label["probability"] for label in result["labels"]}
        assert got == pytest.approx(expected, abs=1e-5)
        assert (result["width"], result["height"]) == (640, 427)

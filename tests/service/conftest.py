"""Service test fixtures: in-process apps over the real `model_repository` bundle, and reference outputs.

The reference runs the bundle's ONNX file with onnxruntime directly (Pillow decode + `labelserve.preprocess`),
independently of the service code, so the app's answers can be compared with it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image, ImageOps
from service_testing import Reference
from starlette.testclient import TestClient

from labelserve.bundle import Bundle, load_bundle
from labelserve.preprocess import preprocess
from service.app import create_app
from service.settings import Settings


@pytest.fixture(scope="session", autouse=True)
def _no_labelserve_environment() -> Iterator[None]:
    """Tests build their Settings explicitly; stray LABELSERVE_* variables of the shell must not leak in."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("LABELSERVE_")]:
            patch.delenv(name)
        yield


@pytest.fixture(scope="session")
def tiny_bundle(model_repository: Path) -> Bundle:
    """The tiny model's only version."""
    return load_bundle(model_repository / "tiny" / "1")


@pytest.fixture(scope="session")
def reference(tiny_bundle: Bundle) -> Reference:
    """image bytes -> {label: probability}, from a plain onnxruntime session on the bundle."""
    manifest = tiny_bundle.manifest
    session = ort.InferenceSession(str(tiny_bundle.file("model.onnx")), providers=["CPUExecutionProvider"])

    def run(data: bytes) -> dict[str, float]:
        with Image.open(io.BytesIO(data)) as image:
            rgb = ImageOps.exif_transpose(image).convert("RGB")
        batch = preprocess(rgb, manifest.input)[None]  # [1, 3, H, W]
        logits = session.run([manifest.outputs.logits.name], {manifest.input_name: batch})[0][0]
        probabilities = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        return dict(zip(manifest.labels, probabilities.tolist(), strict=True))

    return run


@pytest.fixture(scope="session")
def val_jpegs(tiny_dataset: Path) -> list[tuple[str, bytes]]:
    """(file name, bytes) of the synthetic validation scenes."""
    files = sorted((tiny_dataset / "images" / "val").glob("*.jpg"))
    assert files, "the tiny dataset has no validation JPEGs"
    return [(f.name, f.read_bytes()) for f in files]


@pytest.fixture(scope="session")
def photo_jpegs(photo_dir: Path) -> list[tuple[str, bytes]]:
    """(file name, bytes) of the real photos (640x427)."""
    return [(f.name, f.read_bytes()) for f in sorted(photo_dir.glob("*.jpg"))]


@pytest.fixture(scope="module")
def client(model_repository: Path) -> Iterator[TestClient]:
    """The real app on the tiny model, lifespan running, default settings."""
    with TestClient(create_app(Settings(model_repository=model_repository))) as test_client:
        yield test_client

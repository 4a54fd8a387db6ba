"""Shared fixtures: a tiny synthetic dataset, a checkpoint trained on it and its exported bundle.

They are real (rendered, trained, exported through the same code users run), only small: session-scoped so the
whole suite pays for them once.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labelserve.bundle import Bundle, load_bundle
from labelserve.image import open_rgb
from labelserve.preprocess import preprocess

# Apps built in these tests serve OIP over gRPC too: on a port the kernel picks, so that apps alive at once (module
# fixtures) and parallel runs never fight for 8001. Servers started by labelserve_tools.local_server do the same.
os.environ.setdefault("LABELSERVE_GRPC_PORT", "0")

TINY_IMAGE_SIZE = 64
TINY_MODEL_NAME = "tiny"
# the tiny model's recipe as `--set` overrides: a small Query2Label on timm's test_resnet, one epoch
TINY_TRAINING = (f"data.image_size={TINY_IMAGE_SIZE}", "data.batch_size=16", "data.workers=0",
                 "model.backbone=test_resnet", "model.head=query2label",
                 "model.head_kwargs={hidden_dim: 64, keep_input_proj: true, ffn_dim: 128}", "optim.epochs=1",
                 "optim.lr=1e-3")

Reference = Callable[[bytes], dict[str, float]]  # image bytes -> {label: probability}


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 train + 16 val synthetic scenes of 64x64 pixels, COCO format."""
    from training.data.synthetic import generate_objects_dataset

    root = tmp_path_factory.mktemp("tiny-data")
    generate_objects_dataset(root, num_train=64, num_val=16, image_size=TINY_IMAGE_SIZE, seed=7)
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of a small Query2Label model on the tiny dataset (the weights are barely trained; the path is real)."""
    from training.config import load_config
    from training.train import run_training

    out = tmp_path_factory.mktemp("tiny-run")
    config = load_config(None, [
        f"data.train_annotations={tiny_dataset / 'annotations' / 'instances_train.json'}",
        f"data.val_annotations={tiny_dataset / 'annotations' / 'instances_val.json'}",
        *TINY_TRAINING, f"output_dir={out}",
    ])
    return run_training(config, show_progress=False).best_checkpoint


@pytest.fixture(scope="session")
def sample_photos() -> list[Image.Image]:
    """Real photographs bundled with scikit-learn (china.jpg, flower.jpg)."""
    from sklearn.datasets import load_sample_images

    return [Image.fromarray(np.asarray(img)) for img in load_sample_images().images]


@pytest.fixture(scope="session")
def photo_dir(sample_photos: list[Image.Image], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample photos written as JPEG files."""
    root = tmp_path_factory.mktemp("photos")
    for index, photo in enumerate(sample_photos):
        photo.save(root / f"photo{index}.jpg", quality=90)
    return root


@pytest.fixture(scope="session")
def model_repository(tiny_checkpoint: Path, tiny_dataset: Path, photo_dir: Path,
                     tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository holding version 1 of the tiny model, exported (with parity checks) from the checkpoint, with
    both the ONNX file and a torch.export program."""
    from export.repository import export_bundle

    root = tmp_path_factory.mktemp("repository")
    export_bundle(tiny_checkpoint, root, TINY_MODEL_NAME, max_batch=8,
                  parity_images=[tiny_dataset / "images" / "val", photo_dir], torch_program=True)
    return root


@pytest.fixture(scope="session")
def tiny_bundle(model_repository: Path) -> Bundle:
    """The tiny model's only version."""
    return load_bundle(model_repository / "tiny" / "1")


@pytest.fixture(scope="session")
def reference(tiny_bundle: Bundle) -> Reference:
    """image bytes -> {label: probability}, from a plain onnxruntime session on the tiny bundle."""
    return bundle_reference(tiny_bundle)


def bundle_reference(bundle: Bundle) -> Reference:
    """image bytes -> {label: probability}, from a plain onnxruntime session on `bundle`: what the service must
    answer, computed without it."""
    import onnxruntime as ort

    manifest = bundle.manifest
    session = ort.InferenceSession(str(bundle.file("model.onnx")), providers=["CPUExecutionProvider"])

    def run(data: bytes) -> dict[str, float]:
        rgb = open_rgb(io.BytesIO(data), manifest.input)  # training's decode: DCT scale, EXIF, RGB
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


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server (Debian's package), started for the session as an unprivileged user."""
    from tests.postgres_server import start_postgres

    server = start_postgres()
    yield server.url
    server.stop()

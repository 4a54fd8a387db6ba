"""`labelserve visualize` from a checkpoint and from a bundle: same scores, a PNG with one panel per prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from labelserve_tools.cli import main
from training.visualize import predict_file


def test_checkpoint_and_bundle_agree(tiny_checkpoint: Path, model_repository: Path, photo_dir: Path) -> None:
    photo = photo_dir / "photo0.jpg"
    _, from_checkpoint = predict_file(tiny_checkpoint, photo)
    _, from_bundle = predict_file(model_repository / "tiny", photo)
    assert from_checkpoint.labels == from_bundle.labels
    np.testing.assert_allclose(from_checkpoint.probs, from_bundle.probs, atol=1e-5)
    np.testing.assert_allclose(from_checkpoint.thresholds, from_bundle.thresholds)
    assert from_bundle.attention is not None and from_bundle.attention.shape == (20, 2, 2)


def test_cli_writes_a_png(model_repository: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    image = tiny_dataset / "images" / "val" / "000000.jpg"
    out = tmp_path / "vis.png"
    assert main(["visualize", str(model_repository / "tiny" / "1"), str(image), "--out", str(out)]) == 0
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.width > picture.height


def test_cli_renders_a_panel_with_a_row_per_image(model_repository: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    images = [str(tiny_dataset / "images" / "val" / f"00000{i}.jpg") for i in range(3)]
    one, three = tmp_path / "one.png", tmp_path / "three.png"
    assert main(["visualize", str(model_repository / "tiny"), images[0], "--out", str(one), "--max-maps", "2"]) == 0
    assert main(["visualize", str(model_repository / "tiny"), *images, "--out", str(three), "--max-maps", "2"]) == 0
    with Image.open(one) as single, Image.open(three) as panel:
        assert panel.height > 2.5 * single.height  # three rows

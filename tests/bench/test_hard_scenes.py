"""bench/hard_scenes.py draws README's picture of the hard benchmark from the generators themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from bench.hard_scenes import render_hard_scenes


def test_the_picture_is_drawn(tmp_path: Path) -> None:
    path = render_hard_scenes(tmp_path / "scenes.png", side=48, columns=2)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 200 and image.height > 800
        pixels = np.asarray(image.convert("RGB").resize((120, 300))).reshape(-1, 3)
    colours = len(np.unique(pixels, axis=0))
    assert colours > 200  # scenes, figures and a plot, not an empty canvas

"""JPEG payloads for the benchmarks: synthetic scenes rendered on the spot (no dataset download, no torch)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from training.data.synthetic import render_scene


def jpeg_payloads(count: int, size: int, seed: int = 123, folder: Path | None = None) -> list[bytes]:
    """`count` JPEG files: read from `folder` if given (cycled), else rendered synthetic scenes of `size` pixels."""
    if folder is not None:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg"})
        if not files:
            raise FileNotFoundError(f"no .jpg files under {folder}")
        return [files[i % len(files)].read_bytes() for i in range(count)]
    payloads = []
    for index in range(count):
        image, _, _ = render_scene(np.random.default_rng([seed, index]), size)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        payloads.append(buffer.getvalue())
    return payloads

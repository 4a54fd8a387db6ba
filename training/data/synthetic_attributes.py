"""The synthetic `attributes` benchmark: one figure per image, 26 correlated binary attributes, like PA-100K.

Written the way attribute datasets ship, so training goes through the real attribute-table reader: JPEG files plus
`annotations/attributes_<split>.csv` (header `path,<attribute>...`, one 0/1 cell per attribute, paths relative to
the CSV) and `annotations/attribute_groups.json` (group -> attributes, for reports). Every image is rendered from its
own seed (dataset seed, split, index), so datasets are reproducible and generation parallelises across processes.
"""

from __future__ import annotations

import csv
import json
import logging
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from training.data.figures import ATTRIBUTE_GROUPS, ATTRIBUTES, draw_figure, sample_figure
from training.data.synthetic import background

__all__ = ["generate_attributes_dataset", "render_figure"]

logger = logging.getLogger(__name__)

_SPLIT_IDS = {"train": 10, "val": 11, "test": 12}  # distinct from the objects task's streams
_SUPERSAMPLE = 2
_PALETTES = (((150, 150, 150), (205, 205, 200)), ((90, 110, 90), (160, 180, 150)), ((120, 100, 80), (190, 170, 140)),
             ((70, 80, 110), (140, 150, 180)))


def render_figure(rng: np.random.Generator, height: int, width: int) -> tuple[Image.Image, frozenset[str]]:
    """One `width` x `height` RGB image of a person on a textured background, and the attributes that hold."""
    figure = sample_figure(rng)
    side = max(height, width) * _SUPERSAMPLE
    palette = _PALETTES[int(rng.integers(len(_PALETTES)))]
    canvas = background(rng, side, palette).crop((0, 0, width * _SUPERSAMPLE, height * _SUPERSAMPLE))
    draw_figure(canvas, figure)
    image = canvas.resize((width, height), Image.Resampling.BOX).filter(ImageFilter.GaussianBlur(0.3))
    return image, figure.attributes


def _render_to_file(job: tuple[int, str, int, int, int, Path, int]) -> list[int]:
    seed, split, index, height, width, path, quality = job
    rng = np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_IDS[split], index]))
    image, attributes = render_figure(rng, height, width)
    image.save(path, format="JPEG", quality=quality)
    return [int(name in attributes) for name in ATTRIBUTES]


def _write_split(out_dir: Path, split: str, count: int, height: int, width: int, seed: int, quality: int,
                 workers: int) -> Path:
    image_dir = out_dir / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(seed, split, i, height, width, image_dir / f"{i:06d}.jpg", quality) for i in range(count)]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            rows = list(pool.map(_render_to_file, jobs, chunksize=64))
    else:
        rows = [_render_to_file(job) for job in jobs]
    path = out_dir / "annotations" / f"attributes_{split}.csv"
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", *ATTRIBUTES])
        for index, row in enumerate(rows):
            writer.writerow([f"../images/{split}/{index:06d}.jpg", *row])
    tmp.replace(path)
    positives = np.asarray(rows).mean(axis=0) if rows else np.zeros(len(ATTRIBUTES))
    logger.info("wrote %d %s figures to %s (attribute frequency %.2f-%.2f)", count, split, out_dir,
                positives.min(), positives.max())
    return path


def generate_attributes_dataset(
    out_dir: Path,
    num_train: int = 4000,
    num_val: int = 800,
    height: int = 128,
    width: int = 64,
    seed: int = 0,
    jpeg_quality: int = 92,
    workers: int = 1,
) -> dict[str, Path]:
    """Render the `attributes` task into `out_dir`.

    Returns:
        Split name -> path of its attribute table.
    """
    (out_dir / "annotations").mkdir(parents=True, exist_ok=True)
    (out_dir / "annotations" / "attribute_groups.json").write_text(
        json.dumps({group: list(names) for group, names in ATTRIBUTE_GROUPS.items()}, indent=2), encoding="utf-8")
    return {split: _write_split(out_dir, split, count, height, width, seed, jpeg_quality, workers)
            for split, count in (("train", num_train), ("val", num_val))}

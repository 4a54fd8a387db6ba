"""The synthetic `attributes` benchmark: one figure per image, 26 correlated binary attributes, like PA-100K.

Written the way attribute datasets ship, so training goes through the real attribute-table reader: JPEG files plus
`annotations/attributes_<split>.csv` (header `path,<attribute>...`, one 0/1 cell per attribute, paths relative to
the CSV) and `annotations/attribute_groups.json` (group -> attributes, for reports). Every image is rendered from its
own seed (dataset seed, split, index), so datasets are reproducible and generation parallelises across processes.

`AttributesSpec` holds the knobs that make the figures harder to read (smaller people, an unlabelled object in front
of them, a second unlabelled person at the edge, more blur); its defaults render the original benchmark bit for bit.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from training.data.figures import ATTRIBUTE_GROUPS, ATTRIBUTES, Figure, draw_figure, sample_figure
from training.data.shapes import SHAPES, shape_rings
from training.data.synthetic import background

__all__ = ["AttributesSpec", "generate_attributes_dataset", "render_figure"]

logger = logging.getLogger(__name__)

_SPLIT_IDS = {"train": 10, "val": 11, "test": 12}  # distinct from the objects task's streams
_SUPERSAMPLE = 2
_PALETTES = (((150, 150, 150), (205, 205, 200)), ((90, 110, 90), (160, 180, 150)), ((120, 100, 80), (190, 170, 140)),
             ((70, 80, 110), (140, 150, 180)))


@dataclass(frozen=True)
class AttributesSpec:
    """How hard the figures are to read; a knob at its default draws nothing, so the original benchmark is unchanged.

    The labels always describe the whole person: what an occluder hides still holds, as in pedestrian datasets, so a
    model has to infer it from what it sees and from the other attributes (what Label2Label's label context is for).
    """

    scale_range: tuple[float, float] = (1.0, 1.0)  # the figure's height is multiplied by a factor drawn from this
    occluder_probability: float = 0.0  # an unlabelled object in front of the figure, hiding a band of it
    occluder_height: tuple[float, float] = (0.25, 0.45)  # its height over the figure's height
    distractor_probability: float = 0.0  # a second, unlabelled person behind, cut by the left or right edge
    blur: float = 0.3  # Gaussian blur radius in output pixels


def _place_figure(rng: np.random.Generator, spec: AttributesSpec, figure: Figure) -> Figure:
    """The figure scaled by the spec, moved sideways within the room its new width leaves."""
    if spec.scale_range == (1.0, 1.0):
        return figure
    scale = float(rng.uniform(*spec.scale_range))
    return dataclasses.replace(figure, height_fraction=figure.height_fraction * scale,
                               center_x=float(rng.uniform(0.5 - 0.15 / scale, 0.5 + 0.15 / scale)))


def _draw_distractor(rng: np.random.Generator, canvas: Image.Image) -> None:
    """Another person behind the labelled one, half out of the picture: its attributes are not labels."""
    other = sample_figure(rng)
    side = float(rng.choice([-1.0, 1.0]))
    other = dataclasses.replace(other, center_x=0.5 + side * float(rng.uniform(0.45, 0.6)),
                                height_fraction=other.height_fraction * float(rng.uniform(0.75, 1.0)))
    draw_figure(canvas, other)


def _draw_occluder(rng: np.random.Generator, canvas: Image.Image, figure: Figure, spec: AttributesSpec) -> None:
    """A plain object (a shape of the objects task in a random colour) over a horizontal band of the figure."""
    width, height = canvas.size
    unit = figure.height_fraction * height
    top = height - unit - 0.02 * height
    band = unit * float(rng.uniform(*spec.occluder_height))
    centre_y = top + float(rng.uniform(0.1, 0.9)) * unit
    centre_x = figure.center_x * width + float(rng.uniform(-0.15, 0.15)) * width
    shape = sorted(SHAPES)[int(rng.integers(len(SHAPES)))]
    color = tuple(int(v) for v in rng.integers(0, 256, 3))
    rings = shape_rings(shape, (centre_x, centre_y), band * 0.75, float(rng.uniform(0, 2 * math.pi)))
    ImageDraw.Draw(canvas).polygon(rings[0], fill=color)  # its outline only: an occluder hides, it has no holes


def render_figure(rng: np.random.Generator, height: int, width: int,
                  spec: AttributesSpec = AttributesSpec()) -> tuple[Image.Image, frozenset[str]]:
    """One `width` x `height` RGB image of a person on a textured background, and the attributes that hold."""
    figure = _place_figure(rng, spec, sample_figure(rng))
    side = max(height, width) * _SUPERSAMPLE
    palette = _PALETTES[int(rng.integers(len(_PALETTES)))]
    canvas = background(rng, side, palette).crop((0, 0, width * _SUPERSAMPLE, height * _SUPERSAMPLE))
    if spec.distractor_probability and rng.random() < spec.distractor_probability:
        _draw_distractor(rng, canvas)
    draw_figure(canvas, figure)
    if spec.occluder_probability and rng.random() < spec.occluder_probability:
        _draw_occluder(rng, canvas, figure, spec)
    image = canvas.resize((width, height), Image.Resampling.BOX).filter(ImageFilter.GaussianBlur(spec.blur))
    return image, figure.attributes


def _render_to_file(job: tuple[int, str, int, int, int, Path, int, AttributesSpec]) -> list[int]:
    seed, split, index, height, width, path, quality, spec = job
    rng = np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_IDS[split], index]))
    image, attributes = render_figure(rng, height, width, spec)
    image.save(path, format="JPEG", quality=quality)
    return [int(name in attributes) for name in ATTRIBUTES]


def _write_split(out_dir: Path, split: str, count: int, height: int, width: int, seed: int, quality: int,
                 workers: int, spec: AttributesSpec) -> Path:
    image_dir = out_dir / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(seed, split, i, height, width, image_dir / f"{i:06d}.jpg", quality, spec) for i in range(count)]
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
    spec: AttributesSpec = AttributesSpec(),
) -> dict[str, Path]:
    """Render the `attributes` task (or the variant `spec` describes) into `out_dir`.

    Returns:
        Split name -> path of its attribute table.
    """
    (out_dir / "annotations").mkdir(parents=True, exist_ok=True)
    (out_dir / "annotations" / "attribute_groups.json").write_text(
        json.dumps({group: list(names) for group, names in ATTRIBUTE_GROUPS.items()}, indent=2), encoding="utf-8")
    return {split: _write_split(out_dir, split, count, height, width, seed, jpeg_quality, workers, spec)
            for split, count in (("train", num_train), ("val", num_val))}

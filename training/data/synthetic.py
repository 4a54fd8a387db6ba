"""The synthetic `objects` benchmark: deterministic multi-label scenes written as a COCO-format dataset.

Nothing can be downloaded where labelserve is built, so the project renders its own data. Each image has a scene type
(which sets the background and which objects are likely, so labels co-occur as in real photos) and 1-6 objects from
20 classes that differ by shape, colour and texture, at sizes from small to large, with bounded occlusion. The result
is written as JPEG files plus `instances_<split>.json` with boxes, so training always goes through the real COCO reader.

Every image is rendered from its own seed (dataset seed, split, index), so a dataset is reproducible bit for bit with
the same Pillow and NumPy, and generation parallelises across processes.

`ObjectsSpec` holds every knob that sets how hard the task is (which labels exist and how often, object sizes, how
much occlusion, unlabelled look-alike distractors); its defaults are the benchmark above, bit for bit, and
`training/data/synthetic_hard.py` turns the knobs up.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from training.data.shapes import shape_rings

__all__ = ["OBJECT_CLASSES", "SCENE_TYPES", "ObjectClass", "ObjectsSpec", "SceneType", "background",
           "generate_objects_dataset", "render_scene", "sample_classes"]

logger = logging.getLogger(__name__)

RGB = tuple[int, int, int]
_SUPERSAMPLE = 2  # masks are drawn at 2x and box-filtered down, for anti-aliased edges
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class ObjectClass:
    """One label of the benchmark: how its objects look."""

    name: str
    shape: str
    color: RGB
    texture: str = "solid"  # solid | stripes | dots | checker
    second_color: RGB | None = None


@dataclass(frozen=True)
class SceneType:
    """A kind of scene: its background palette and the objects that usually appear in it."""

    name: str
    background: tuple[RGB, RGB]
    typical: tuple[str, ...]


OBJECT_CLASSES: tuple[ObjectClass, ...] = (
    ObjectClass("red_circle", "circle", (220, 40, 40)),
    ObjectClass("blue_square", "square", (40, 80, 220)),
    ObjectClass("green_triangle", "triangle", (40, 170, 60)),
    ObjectClass("yellow_star", "star", (245, 215, 40)),
    ObjectClass("purple_hexagon", "hexagon", (140, 60, 190)),
    ObjectClass("orange_cross", "cross", (245, 140, 30)),
    ObjectClass("cyan_ring", "ring", (40, 200, 210)),
    ObjectClass("magenta_diamond", "diamond", (220, 50, 170)),
    ObjectClass("white_crescent", "crescent", (240, 240, 235)),
    ObjectClass("pink_heart", "heart", (250, 140, 185)),
    ObjectClass("brown_pentagon", "pentagon", (125, 75, 35)),
    ObjectClass("teal_arrow", "arrow", (20, 130, 120)),
    ObjectClass("striped_navy_ellipse", "ellipse", (30, 40, 120), "stripes", (200, 200, 230)),
    ObjectClass("striped_red_square", "square", (220, 40, 40), "stripes", (250, 230, 230)),
    ObjectClass("dotted_blue_circle", "circle", (40, 80, 220), "dots", (235, 235, 250)),
    ObjectClass("checkered_triangle", "triangle", (25, 25, 25), "checker", (235, 235, 235)),
    ObjectClass("lime_trapezoid", "trapezoid", (160, 230, 40)),
    ObjectClass("gold_semicircle", "semicircle", (190, 135, 20)),
    ObjectClass("grey_bolt", "bolt", (110, 110, 115)),
    ObjectClass("darkred_octagon", "octagon", (125, 15, 30)),
)

SCENE_TYPES: tuple[SceneType, ...] = (
    SceneType("sky", ((70, 120, 200), (170, 205, 240)),
              ("yellow_star", "white_crescent", "cyan_ring", "striped_navy_ellipse", "grey_bolt", "gold_semicircle")),
    SceneType("garden", ((60, 110, 50), (150, 190, 110)),
              ("pink_heart", "green_triangle", "lime_trapezoid", "purple_hexagon", "brown_pentagon", "red_circle")),
    SceneType("street", ((70, 70, 75), (160, 160, 165)),
              ("darkred_octagon", "orange_cross", "teal_arrow", "blue_square", "checkered_triangle", "yellow_star")),
    SceneType("kitchen", ((200, 180, 140), (240, 230, 205)),
              ("striped_red_square", "dotted_blue_circle", "magenta_diamond", "brown_pentagon", "teal_arrow",
               "white_crescent")),
    SceneType("playroom", ((225, 200, 230), (250, 240, 210)),
              ("red_circle", "blue_square", "green_triangle", "pink_heart", "magenta_diamond", "orange_cross")),
)



@dataclass(frozen=True)
class ObjectsSpec:
    """What scenes may hold and how hard they are to read; the defaults render the original benchmark bit for bit.

    A knob left at its default draws nothing from the image's random stream, so adding knobs never changes the
    datasets made without them (tests/training/test_synthetic_hard.py holds the default output to a fixed digest).
    """

    classes: tuple[ObjectClass, ...] = OBJECT_CLASSES
    scenes: tuple[SceneType, ...] = SCENE_TYPES
    object_count_weights: tuple[float, ...] = (0.12, 0.22, 0.24, 0.2, 0.13, 0.09)  # P(1, 2, ... labelled objects)
    typical_probability: float = 0.8  # an object comes from its scene's typical set with this probability
    class_weights: tuple[float, ...] | None = None  # relative frequency of each class (None: uniform)
    radius_range: tuple[float, float] = (0.07, 0.24)  # object radius over the image side, drawn log-uniform
    min_visible_fraction: float = 0.5  # an object may lose at most this share of its pixels to objects over it
    distractors: tuple[ObjectClass, ...] = ()  # unlabelled objects, e.g. a label's shape in another colour
    distractor_count_weights: tuple[float, ...] = (1.0,)  # P(0, 1, ... distractors in an image)

    def __post_init__(self) -> None:
        names = [c.name for c in self.classes]
        if len(set(names)) != len(names):
            raise ValueError("ObjectsSpec.classes has duplicate names")
        if self.class_weights is not None and len(self.class_weights) != len(self.classes):
            raise ValueError(f"ObjectsSpec.class_weights has {len(self.class_weights)} weights for "
                             f"{len(self.classes)} classes")
        unknown = {t for s in self.scenes for t in s.typical} - set(names)
        if unknown:
            raise ValueError(f"scene types name classes that are not in ObjectsSpec.classes: {sorted(unknown)}")
        looks = {(c.shape, c.color, c.texture, c.second_color) for c in self.classes}
        if any((d.shape, d.color, d.texture, d.second_color) in looks for d in self.distractors):
            raise ValueError("a distractor looks exactly like a labelled class")



@dataclass(frozen=True)
class PlacedObject:
    """An object rendered into a scene, with its full-extent box in pixels."""

    class_index: int
    bbox: tuple[float, float, float, float]  # x, y, w, h (COCO convention)
    visible_pixels: int
    pixels: int = 0  # of the whole object, before anything was drawn over it


def _rng_for(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_IDS[split], index]))


def background(rng: np.random.Generator, size: int, palette: tuple[RGB, RGB]) -> Image.Image:
    """A textured background: a random-direction gradient, low-frequency blotches, fine noise and clutter lines."""
    low, high = (np.asarray(c, dtype=np.float32) for c in palette)
    angle = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    ramp = (np.cos(angle) * xs + np.sin(angle) * ys + 1.5) / 3.0
    coarse = rng.random((6, 6)).astype(np.float32)
    blotch = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC),
                        dtype=np.float32) / 255.0
    mix = np.clip(0.55 * ramp + 0.45 * blotch, 0, 1)[..., None]
    pixels = low * (1 - mix) + high * mix + rng.normal(0, 6, (size, size, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(2, 7)):
        shade = tuple(int(v) for v in np.clip(low * rng.uniform(0.6, 1.3), 0, 255))
        points = [tuple(rng.uniform(0, size, 2).tolist()) for _ in range(3)]
        draw.line(points, fill=shade, width=int(rng.integers(1, max(2, size // 40))))
    return image


def _texture(rng: np.random.Generator, size: int, cls: ObjectClass) -> Image.Image:
    """The fill of one object over the whole canvas (masked later)."""
    base = np.asarray(cls.color, dtype=np.float32) * rng.uniform(0.88, 1.08)
    pixels = np.empty((size, size, 3), dtype=np.float32)
    pixels[:] = np.clip(base, 0, 255)
    if cls.texture != "solid":
        second = np.asarray(cls.second_color or (255, 255, 255), dtype=np.float32)
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
        period = max(4.0, size * rng.uniform(0.035, 0.06))
        if cls.texture == "stripes":
            angle = rng.uniform(0, math.pi)
            pattern = np.sin((np.cos(angle) * xs + np.sin(angle) * ys) * 2 * math.pi / period) > 0.2
        elif cls.texture == "dots":
            pattern = ((xs % period - period / 2) ** 2 + (ys % period - period / 2) ** 2) < (period * 0.3) ** 2
        else:  # checker
            pattern = ((xs // period).astype(int) + (ys // period).astype(int)) % 2 == 0
        pixels[pattern] = second
    pixels += rng.normal(0, 4, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _object_mask(shape: str, size: int, center: tuple[float, float], radius: float, angle: float) -> Image.Image:
    """Anti-aliased 'L' mask of one object on a canvas of `size` pixels."""
    big = size * _SUPERSAMPLE
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    rings = shape_rings(shape, (center[0] * _SUPERSAMPLE, center[1] * _SUPERSAMPLE), radius * _SUPERSAMPLE, angle)
    draw.polygon(rings[0], fill=255)
    for hole in rings[1:]:
        draw.polygon(hole, fill=0)
    return mask.resize((size, size), Image.Resampling.BOX)


def _pick(rng: np.random.Generator, pool: list[int], weights: tuple[float, ...] | None) -> int:
    """One class index of `pool`: uniform (the original draw), or by the classes' relative frequencies."""
    if weights is None:
        return pool[int(rng.integers(len(pool)))]
    chances = np.asarray([weights[i] for i in pool], dtype=np.float64)
    return pool[int(rng.choice(len(pool), p=chances / chances.sum()))]


def sample_classes(rng: np.random.Generator, scene: SceneType, spec: ObjectsSpec = ObjectsSpec()) -> list[int]:
    """The labelled objects of one scene (class indices, repeats allowed), before placement drops any."""
    index = {c.name: i for i, c in enumerate(spec.classes)}
    count_weights = np.asarray(spec.object_count_weights)
    count = int(rng.choice(len(count_weights), p=count_weights / count_weights.sum())) + 1
    typical = [index[name] for name in scene.typical]
    everything = list(range(len(spec.classes)))
    return [_pick(rng, typical if rng.random() < spec.typical_probability else everything, spec.class_weights)
            for _ in range(count)]


def _with_distractors(rng: np.random.Generator, labelled: list[int], spec: ObjectsSpec) -> list[tuple[int, bool]]:
    """(class or distractor index, labelled) in drawing order; distractors are shuffled in among the labels."""
    items = [(c, True) for c in labelled]
    if not spec.distractors:  # draws nothing, so the original benchmark is unchanged
        return items
    weights = np.asarray(spec.distractor_count_weights, dtype=np.float64)
    count = int(rng.choice(len(weights), p=weights / weights.sum()))
    items += [(int(rng.integers(len(spec.distractors))), False) for _ in range(count)]
    return [items[i] for i in rng.permutation(len(items))]


def _place(
    rng: np.random.Generator, size: int, cls: ObjectClass, masks: list[np.ndarray], visible: list[np.ndarray],
    spec: ObjectsSpec,
) -> tuple[Image.Image, np.ndarray] | None:
    """Find a position where the new object leaves every earlier labelled one visible enough; None after 20 tries."""
    low, high = spec.radius_range
    for _ in range(20):
        radius = size * math.exp(rng.uniform(math.log(low), math.log(high)))
        center = (float(rng.uniform(radius * 0.6, size - radius * 0.6)), float(rng.uniform(radius * 0.6,
                                                                                            size - radius * 0.6)))
        mask = _object_mask(cls.shape, size, center, radius, float(rng.uniform(0, 2 * math.pi)))
        solid = np.asarray(mask) >= 128
        if solid.sum() < 16:
            continue
        if all((vis & ~solid).sum() >= spec.min_visible_fraction * full.sum()
               for vis, full in zip(visible, masks, strict=True)):
            return mask, solid
    return None


def render_scene(
    rng: np.random.Generator, size: int, spec: ObjectsSpec = ObjectsSpec()
) -> tuple[Image.Image, str, list[PlacedObject]]:
    """Render one scene.

    Returns:
        The RGB image, the scene type's name and the labelled objects placed (drawn in list order, later ones on
        top; distractors are drawn too, but not returned).
    """
    scene = spec.scenes[int(rng.integers(len(spec.scenes)))]
    image = background(rng, size, scene.background)
    masks: list[np.ndarray] = []  # of labelled objects only: distractors may be covered freely
    visible: list[np.ndarray] = []
    classes: list[int] = []
    for index, labelled in _with_distractors(rng, sample_classes(rng, scene, spec), spec):
        cls = spec.classes[index] if labelled else spec.distractors[index]
        placed = _place(rng, size, cls, masks, visible, spec)
        if placed is None:
            continue
        mask, solid = placed
        if rng.random() < 0.5:  # a darker outline on half the objects, like the edges of real things
            edge = mask.filter(ImageFilter.MaxFilter(3))
            outline = tuple(int(c * 0.45) for c in cls.color)
            image = Image.composite(Image.new("RGB", image.size, outline), image, edge)
        image = Image.composite(_texture(rng, size, cls), image, mask)
        visible = [vis & ~solid for vis in visible]
        if labelled:
            masks.append(solid)
            visible.append(solid.copy())
            classes.append(index)
    objects = []
    for class_index, full, vis in zip(classes, masks, visible, strict=True):
        ys, xs = np.nonzero(full)
        bbox = (float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1))
        objects.append(PlacedObject(class_index, bbox, int(vis.sum()), int(full.sum())))
    return image, scene.name, objects


def _render_to_file(args: tuple[int, str, int, int, Path, int, ObjectsSpec]) -> dict:
    seed, split, index, size, path, quality, spec = args
    rng = _rng_for(seed, split, index)
    image, scene, objects = render_scene(rng, size, spec)
    image.save(path, format="JPEG", quality=quality)
    return {"scene": scene, "objects": objects}


def _split_records(
    out_dir: Path, split: str, count: int, size: int, seed: int, quality: int, workers: int, spec: ObjectsSpec
) -> Iterator[tuple[int, str, dict]]:
    image_dir = out_dir / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(seed, split, i, size, image_dir / f"{i:06d}.jpg", quality, spec) for i in range(count)]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = pool.map(_render_to_file, jobs, chunksize=32)
            for i, record in enumerate(results):
                yield i, f"{split}/{i:06d}.jpg", record
    else:
        for i, job in enumerate(jobs):
            yield i, f"{split}/{i:06d}.jpg", _render_to_file(job)


def generate_objects_dataset(
    out_dir: Path,
    num_train: int = 4000,
    num_val: int = 800,
    image_size: int = 160,
    seed: int = 0,
    jpeg_quality: int = 92,
    workers: int = 1,
    spec: ObjectsSpec = ObjectsSpec(),
) -> dict[str, Path]:
    """Render the `objects` task (or the variant `spec` describes) into `out_dir` as a COCO-format dataset.

    Layout: `images/<split>/NNNNNN.jpg` and `annotations/instances_<split>.json` (COCO instances format; image
    `file_name` is relative to `images/`, and each image also records its `scene`).

    Returns:
        Split name -> path of its instances json.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "annotations").mkdir(exist_ok=True)
    categories = [{"id": i + 1, "name": c.name, "supercategory": c.shape} for i, c in enumerate(spec.classes)]
    written = {}
    for split, count in (("train", num_train), ("val", num_val)):
        images, annotations = [], []
        records = _split_records(out_dir, split, count, image_size, seed, jpeg_quality, workers, spec)
        for index, file_name, record in records:
            image_id = index + 1
            images.append({"id": image_id, "file_name": file_name, "width": image_size, "height": image_size,
                           "scene": record["scene"]})
            for obj in record["objects"]:
                annotations.append({
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": obj.class_index + 1,
                    "bbox": list(obj.bbox),
                    "area": obj.visible_pixels,
                    "iscrowd": 0,
                })
        info = {"description": "labelserve synthetic objects benchmark", "seed": seed, "split": split,
                "image_size": image_size}
        path = out_dir / "annotations" / f"instances_{split}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"info": info, "images": images, "annotations": annotations,
                                   "categories": categories}), encoding="utf-8")
        tmp.replace(path)
        written[split] = path
        logger.info("wrote %d %s images with %d objects to %s", len(images), split, len(annotations), out_dir)
    return written

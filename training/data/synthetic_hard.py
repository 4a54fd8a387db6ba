"""The `hard` variant of the synthetic benchmarks: the knobs of `ObjectsSpec` and `AttributesSpec` turned up.

The standard scenes saturate every head (94-99 mAP), because they lack what makes MS-COCO hard. Here:
- 40 labels (a shape in a colour, some textured) instead of 20, with long-tailed frequencies (Zipf weights
  1 / rank^0.8: the most frequent label is in ~19 times as many scenes as the rarest);
- smaller objects (radius 5-20 % of the side, log-uniform, so bounding boxes down to ~1 % of the image);
- heavier occlusion (an object may lose 65 % of its pixels instead of 50 %);
- unlabelled distractors drawn among the labels, each a labelled shape in a colour no label gives that shape, so a
  detector must read shape and colour together;
- 8 scene types whose typical labels overlap and cover 75 % of the objects, so labels co-occur but not always.
For attributes: smaller figures, an unlabelled object in front of half of them (the hidden attributes still hold),
a second unlabelled person at the edge of 40 %, and more blur.
"""

from __future__ import annotations

from training.data.shapes import SHAPES
from training.data.synthetic import ObjectClass, ObjectsSpec, SceneType
from training.data.synthetic_attributes import AttributesSpec

__all__ = ["HARD_ATTRIBUTES", "HARD_OBJECTS", "NUM_LABELS", "TAIL_EXPONENT", "hard_objects_spec"]

RGB = tuple[int, int, int]

NUM_LABELS = 40
TAIL_EXPONENT = 0.8
_COLOURS: tuple[tuple[str, RGB], ...] = (
    ("red", (220, 40, 40)), ("blue", (40, 80, 220)), ("green", (40, 170, 60)), ("yellow", (245, 215, 40)),
    ("purple", (140, 60, 190)), ("orange", (245, 140, 30)), ("cyan", (40, 200, 210)), ("magenta", (220, 50, 170)),
    ("white", (240, 240, 235)), ("pink", (250, 140, 185)), ("brown", (125, 75, 35)), ("teal", (20, 130, 120)),
    ("navy", (30, 40, 120)), ("lime", (160, 230, 40)), ("grey", (110, 110, 115)), ("black", (25, 25, 25)),
)
_TEXTURES = {3: "stripes", 6: "dots", 7: "checker"}  # label index % 8 -> texture; the others are solid
_SCENES: tuple[tuple[str, tuple[RGB, RGB]], ...] = (
    ("sky", ((70, 120, 200), (170, 205, 240))), ("garden", ((60, 110, 50), (150, 190, 110))),
    ("street", ((70, 70, 75), (160, 160, 165))), ("kitchen", ((200, 180, 140), (240, 230, 205))),
    ("playroom", ((225, 200, 230), (250, 240, 210))), ("beach", ((200, 170, 110), (245, 225, 170))),
    ("night", ((15, 20, 45), (70, 80, 120))), ("forest", ((25, 60, 30), (90, 120, 70))),
)


def _colour(shape_index: int, step: int) -> tuple[str, RGB]:
    """The colour a shape gets at `step`: 7 is a unit mod 16, so shapes spread over the palette; steps 0, 12 and 8
    are labels, 2 and 4 distractors, and they never coincide for one shape."""
    return _COLOURS[(7 * shape_index + step) % len(_COLOURS)]


def _look(shape: str, colour: tuple[str, RGB], texture: str) -> ObjectClass:
    name, rgb = colour
    second = (25, 25, 25) if sum(rgb) > 600 else (235, 235, 235)
    prefix = "" if texture == "solid" else {"stripes": "striped_", "dots": "dotted_", "checker": "checkered_"}[texture]
    return ObjectClass(f"{prefix}{name}_{shape}", shape, rgb, texture, None if texture == "solid" else second)


def _labels(count: int) -> tuple[ObjectClass, ...]:
    """`count` (at most 3 per shape) distinct looks: shapes in turn, each round in a colour the shape had not."""
    shapes = sorted(SHAPES)
    if count > 3 * len(shapes):
        raise ValueError(f"at most {3 * len(shapes)} hard labels")
    labels = []
    for index in range(count):
        shape_index, round_ = index % len(shapes), index // len(shapes)
        colour = _colour(shape_index, (0, 12, 8)[round_])
        labels.append(_look(shapes[shape_index], colour, _TEXTURES.get(index % 8, "solid")))
    return tuple(labels)


def _distractors() -> tuple[ObjectClass, ...]:
    shapes = sorted(SHAPES)
    return tuple(_look(shape, _colour(i, step), "solid") for i, shape in enumerate(shapes) for step in (2, 4))


def _scenes(labels: tuple[ObjectClass, ...]) -> tuple[SceneType, ...]:
    """Scene j's typical labels: every 8th label from j, plus the frequent half of those from j + 3 (overlap)."""
    count = len(_SCENES)
    return tuple(SceneType(name, palette, tuple(
        label.name for i, label in enumerate(labels) if i % count == j or (i % count == (j + 3) % count and i < 24)))
        for j, (name, palette) in enumerate(_SCENES))


def hard_objects_spec(num_labels: int = NUM_LABELS, tail_exponent: float = TAIL_EXPONENT) -> ObjectsSpec:
    """The hard objects task (the module docstring says what each knob does)."""
    labels = _labels(num_labels)
    return ObjectsSpec(
        classes=labels,
        scenes=_scenes(labels),
        object_count_weights=(0.15, 0.25, 0.25, 0.18, 0.1, 0.07),
        typical_probability=0.75,
        class_weights=tuple(1.0 / (i + 1) ** tail_exponent for i in range(len(labels))),
        radius_range=(0.05, 0.2),
        min_visible_fraction=0.35,
        distractors=_distractors(),
        distractor_count_weights=(0.3, 0.35, 0.2, 0.15),
    )


HARD_OBJECTS = hard_objects_spec()
HARD_ATTRIBUTES = AttributesSpec(scale_range=(0.55, 1.0), occluder_probability=0.5, distractor_probability=0.4,
                                 blur=0.6)

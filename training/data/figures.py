"""Figures for the synthetic `attributes` task: correlated attributes sampled per person, then drawn.

Like PA-100K, every image shows one standing figure and the labels describe it: 26 binary attributes in groups
(gender, age, view, head, upper body, lower body, shoes, carried things). Sampling makes them co-occur the way
pedestrian attributes do (female -> long hair, skirt, handbag; child -> backpack, shorts; old -> hat, glasses, long
coat) and respects what a view can show (no glasses or logo seen from the back), so a model that reads the label
context (Label2Label) has something to learn beyond independent detectors. Some attributes are small (glasses,
logo, holding something), as the hard ones are in real data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["ATTRIBUTES", "ATTRIBUTE_GROUPS", "Figure", "draw_figure", "sample_figure"]

RGB = tuple[int, int, int]
T = TypeVar("T")

ATTRIBUTE_GROUPS: dict[str, tuple[str, ...]] = {
    "gender": ("female",),
    "age": ("age_child", "age_adult", "age_old"),
    "view": ("view_front", "view_side", "view_back"),
    "head": ("hat", "glasses", "long_hair"),
    "upper": ("short_sleeve", "long_sleeve", "upper_stripe", "upper_logo", "upper_plaid", "long_coat"),
    "lower": ("trousers", "shorts", "skirt", "lower_stripe", "lower_dots"),
    "shoes": ("boots",),
    "carrying": ("handbag", "shoulder_bag", "backpack", "holding_object"),
}
ATTRIBUTES: tuple[str, ...] = tuple(a for group in ATTRIBUTE_GROUPS.values() for a in group)

_SKIN = ((241, 200, 170), (198, 140, 100), (141, 85, 54), (224, 172, 130))
_HAIR = ((30, 22, 18), (90, 56, 30), (200, 160, 80), (60, 40, 30))
_GREY_HAIR = ((200, 200, 200), (170, 170, 175))
_CLOTHES = ((200, 40, 40), (40, 70, 170), (40, 140, 70), (230, 200, 60), (40, 40, 40), (235, 235, 235),
            (130, 60, 150), (240, 130, 40), (120, 90, 60), (90, 160, 200))


@dataclass(frozen=True)
class Figure:
    """One person: which attributes hold, plus the nuisance choices (colours, position) that are not labels."""

    attributes: frozenset[str]
    skin: RGB
    hair: RGB
    upper: RGB
    lower: RGB
    accent: RGB
    center_x: float  # fraction of the width
    height_fraction: float  # figure height over image height

    def has(self, name: str) -> bool:
        """Whether attribute `name` holds."""
        return name in self.attributes


def _pick(rng: np.random.Generator, options: tuple[T, ...], weights: tuple[float, ...] | None = None) -> T:
    index = rng.choice(len(options), p=None if weights is None else np.asarray(weights) / sum(weights))
    return options[int(index)]


def _sample_head_and_upper(rng: np.random.Generator, female: bool, age: str, view: str) -> set[str]:
    old, child, back = age == "age_old", age == "age_child", view == "view_back"
    on: set[str] = set()
    if rng.random() < (0.75 if female else 0.1):
        on.add("long_hair")
    if rng.random() < (0.35 if old else 0.12):
        on.add("hat")
    if not back and rng.random() < (0.5 if old else 0.15):
        on.add("glasses")
    on.add("long_sleeve" if rng.random() < (0.8 if old else 0.5) else "short_sleeve")
    pattern = _pick(rng, ("none", "upper_stripe", "upper_logo", "upper_plaid"), (0.55, 0.15, 0.15, 0.15))
    if pattern != "none" and not (pattern == "upper_logo" and back):
        on.add(pattern)
    if "long_sleeve" in on and not child and rng.random() < (0.35 if old else 0.12):
        on.add("long_coat")
    return on


def _sample_lower_and_carried(rng: np.random.Generator, female: bool, age: str) -> set[str]:
    old, child = age == "age_old", age == "age_child"
    skirt_p = (0.45 if female else 0.0) * (0.5 if old else 1.0)
    shorts_p = 0.45 if child else 0.12
    on = {_pick(rng, ("skirt", "shorts", "trousers"), (skirt_p, shorts_p, max(0.0, 1.0 - skirt_p - shorts_p)))}
    on.add(_pick(rng, ("none", "lower_stripe", "lower_dots"), (0.76, 0.12, 0.12)))
    chances = {"boots": 0.28 if female else 0.12, "handbag": 0.35 if female and not child else 0.05,
               "shoulder_bag": 0.18, "backpack": 0.55 if child else 0.2, "holding_object": 0.2}
    on |= {name for name, p in chances.items() if rng.random() < p}
    return on - {"none"}


def sample_figure(rng: np.random.Generator) -> Figure:
    """Draw the attributes of one person with the co-occurrences described in the module docstring."""
    female = bool(rng.random() < 0.45)
    age = _pick(rng, ("age_child", "age_adult", "age_old"), (0.15, 0.7, 0.15))
    view = _pick(rng, ("view_front", "view_side", "view_back"), (0.4, 0.3, 0.3))
    on = {age, view} | ({"female"} if female else set())
    on |= _sample_head_and_upper(rng, female, age, view)
    on |= _sample_lower_and_carried(rng, female, age)
    upper, lower = rng.choice(len(_CLOTHES), size=2, replace=False)
    hair = _pick(rng, _GREY_HAIR) if age == "age_old" else _pick(rng, _HAIR)
    return Figure(attributes=frozenset(on), skin=_pick(rng, _SKIN), hair=hair, upper=_CLOTHES[int(upper)],
                  lower=_CLOTHES[int(lower)], accent=_pick(rng, _CLOTHES), center_x=float(rng.uniform(0.4, 0.6)),
                  height_fraction=float(rng.uniform(0.55, 0.65) if age == "age_child" else rng.uniform(0.8, 0.92)))


def _darker(color: RGB, factor: float = 0.55) -> RGB:
    return (int(color[0] * factor), int(color[1] * factor), int(color[2] * factor))


@dataclass(frozen=True)
class _Body:
    """Key heights and widths of a figure in pixels (on the drawing canvas)."""

    cx: float
    top: float
    unit: float  # the figure's height
    half_width: float  # half the shoulder width

    def y(self, fraction: float) -> float:
        return self.top + fraction * self.unit


def _draw_long_hair(draw: ImageDraw.ImageDraw, body: _Body, figure: Figure) -> None:
    """Hair down to the shoulder blades: behind the body from the front and side, over it from the back."""
    r = 0.065 * body.unit
    draw.rectangle((body.cx - 1.1 * r, body.y(0.075), body.cx + 1.1 * r, body.y(0.27)), fill=figure.hair)


def _draw_head(draw: ImageDraw.ImageDraw, body: _Body, figure: Figure) -> None:
    r = 0.065 * body.unit
    cx, cy = body.cx, body.y(0.075)
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=figure.hair if figure.has("view_back") else figure.skin)
    if not figure.has("view_back"):
        draw.chord((cx - r, cy - r, cx + r, cy + 0.2 * r), 180, 360, fill=figure.hair)  # hairline
        eye = 0.12 * r
        eyes = (cx - 0.4 * r, cx + 0.4 * r) if figure.has("view_front") else (cx + 0.45 * r,)
        for ex in eyes:
            draw.ellipse((ex - eye, cy + 0.1 * r - eye, ex + eye, cy + 0.1 * r + eye), fill=(20, 20, 20))
        if figure.has("glasses"):
            for ex in eyes:
                draw.ellipse((ex - 0.3 * r, cy - 0.2 * r, ex + 0.3 * r, cy + 0.4 * r), outline=(10, 10, 10),
                             width=max(1, int(0.12 * r)))
    if figure.has("hat"):
        draw.rectangle((cx - 1.5 * r, cy - 0.75 * r, cx + 1.5 * r, cy - 0.5 * r), fill=figure.accent)
        draw.rectangle((cx - 0.9 * r, cy - 1.6 * r, cx + 0.9 * r, cy - 0.6 * r), fill=figure.accent)


def _pattern(draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float], kind: str, color: RGB,
             unit: float) -> None:
    x0, y0, x1, y1 = box
    step = max(3.0, 0.035 * unit)
    width = max(1, int(step / 3))
    if kind in ("upper_stripe", "upper_plaid"):
        for y in np.arange(y0 + step / 2, y1, step):
            draw.line((x0, y, x1, y), fill=color, width=width)
    if kind in ("upper_plaid", "lower_stripe"):
        for x in np.arange(x0 + step / 2, x1, step):
            draw.line((x, y0, x, y1), fill=color, width=width)
    if kind == "lower_dots":
        dot = step / 4
        for y in np.arange(y0 + step / 2, y1, step):
            for x in np.arange(x0 + step / 2, x1, step):
                draw.ellipse((x - dot, y - dot, x + dot, y + dot), fill=color)


def _draw_lower(draw: ImageDraw.ImageDraw, body: _Body, figure: Figure) -> None:
    cx, hw = body.cx, body.half_width
    waist, knee, ankle = body.y(0.5), body.y(0.74), body.y(0.96)
    leg = 0.42 * hw
    legs = [(cx - 0.5 * hw - leg / 2, cx - 0.5 * hw + leg / 2), (cx + 0.5 * hw - leg / 2, cx + 0.5 * hw + leg / 2)]
    if figure.has("view_side"):
        legs = [(cx - leg / 2, cx + leg / 2)]
    for x0, x1 in legs:
        draw.rectangle((x0, waist, x1, ankle), fill=figure.skin)
    pattern_color = _darker(figure.lower, 0.4) if sum(figure.lower) > 200 else (230, 230, 230)
    pattern = next((p for p in ("lower_stripe", "lower_dots") if figure.has(p)), None)
    if figure.has("skirt"):
        box = (cx - 1.15 * hw, waist, cx + 1.15 * hw, knee)
        draw.polygon([(cx - 0.8 * hw, waist), (cx + 0.8 * hw, waist), (box[2], knee), (box[0], knee)],
                     fill=figure.lower)
        if pattern:
            _pattern(draw, (cx - 0.7 * hw, waist, cx + 0.7 * hw, knee), pattern, pattern_color, body.unit)
    else:
        bottom = body.y(0.64) if figure.has("shorts") else ankle
        for x0, x1 in legs:
            draw.rectangle((x0 - 0.1 * leg, waist, x1 + 0.1 * leg, bottom), fill=figure.lower)
            if pattern:
                _pattern(draw, (x0 - 0.1 * leg, waist, x1 + 0.1 * leg, bottom), pattern, pattern_color, body.unit)
        draw.rectangle((legs[0][0] - 0.1 * leg, waist, legs[-1][1] + 0.1 * leg, body.y(0.56)), fill=figure.lower)
    shoe_top = body.y(0.82) if figure.has("boots") else body.y(0.94)
    for x0, x1 in legs:
        draw.rectangle((x0 - 0.15 * leg, shoe_top, x1 + 0.35 * leg, body.y(0.985)), fill=(35, 30, 28))


def _draw_upper(draw: ImageDraw.ImageDraw, body: _Body, figure: Figure) -> None:
    cx, hw = body.cx, body.half_width
    shoulder, waist = body.y(0.16), body.y(0.52)
    bottom = body.y(0.8) if figure.has("long_coat") else waist
    torso = (cx - hw, shoulder, cx + hw, bottom)
    draw.rounded_rectangle(torso, radius=0.2 * hw, fill=figure.upper)
    pattern_color = _darker(figure.upper, 0.4) if sum(figure.upper) > 200 else (230, 230, 230)
    for kind in ("upper_stripe", "upper_plaid"):
        if figure.has(kind):
            _pattern(draw, (torso[0] + 0.1 * hw, shoulder + 0.05 * hw, torso[2] - 0.1 * hw, bottom), kind,
                     pattern_color, body.unit)
    if figure.has("upper_logo"):
        r = 0.28 * hw
        lx, ly = (cx, body.y(0.27)) if figure.has("view_front") else (cx + 0.3 * hw, body.y(0.27))
        draw.regular_polygon((lx, ly, r), 5, fill=figure.accent if figure.accent != figure.upper else (250, 250, 250))
    arm = 0.3 * hw
    arms = (cx - hw - arm, cx + hw) if not figure.has("view_side") else (cx - 0.5 * arm,)
    sleeve_end = body.y(0.5) if figure.has("long_sleeve") else body.y(0.27)
    for x0 in arms:
        draw.rectangle((x0, shoulder + 0.1 * hw, x0 + arm, body.y(0.5)), fill=figure.skin)
        draw.rectangle((x0, shoulder, x0 + arm, sleeve_end), fill=figure.upper)


def _draw_backpack(draw: ImageDraw.ImageDraw, body: _Body, figure: Figure, behind: bool) -> None:
    """Seen whole from the back, beside the body from the side, as two straps from the front."""
    cx, hw = body.cx, body.half_width
    color = _darker(figure.accent, 0.8)
    pack = (cx - 0.85 * hw, body.y(0.18), cx + 0.85 * hw, body.y(0.45))
    if figure.has("view_side"):
        pack = (cx - 1.9 * hw, body.y(0.18), cx - 0.7 * hw, body.y(0.45))
    if behind != figure.has("view_back"):
        draw.rounded_rectangle(pack, radius=0.15 * hw, fill=color)
    elif not behind and figure.has("view_front"):
        for sx in (cx - 0.6 * hw, cx + 0.6 * hw):
            draw.line((sx, body.y(0.16), sx, body.y(0.33)), fill=color, width=max(2, int(0.18 * hw)))


def _draw_bags_and_objects(draw: ImageDraw.ImageDraw, body: _Body, figure: Figure) -> None:
    cx, hw = body.cx, body.half_width
    if figure.has("shoulder_bag"):
        draw.line((cx - 0.8 * hw, body.y(0.16), cx + 0.9 * hw, body.y(0.46)), fill=(60, 40, 30),
                  width=max(2, int(0.1 * hw)))
        draw.rectangle((cx + 0.6 * hw, body.y(0.44), cx + 1.35 * hw, body.y(0.55)), fill=(110, 70, 40))
    hand_y = body.y(0.5)
    if figure.has("handbag"):
        x = cx - hw - 0.15 * hw
        draw.arc((x - 0.35 * hw, hand_y - 0.25 * hw, x + 0.35 * hw, hand_y + 0.25 * hw), 180, 360,
                 fill=(40, 30, 25), width=max(1, int(0.08 * hw)))
        draw.rectangle((x - 0.45 * hw, hand_y, x + 0.45 * hw, hand_y + 0.6 * hw), fill=figure.accent)
    if figure.has("holding_object"):
        x = cx + hw + 0.15 * hw if not figure.has("view_side") else cx + 0.2 * hw
        draw.rectangle((x - 0.12 * hw, hand_y - 0.35 * hw, x + 0.22 * hw, hand_y + 0.1 * hw), fill=(20, 20, 120))


def draw_figure(canvas: Image.Image, figure: Figure) -> None:
    """Draw `figure` onto `canvas` (RGB, in place), standing on the bottom edge."""
    width, height = canvas.size
    unit = figure.height_fraction * height
    body = _Body(cx=figure.center_x * width, top=height - unit - 0.02 * height, unit=unit,
                 half_width=(0.085 if figure.has("view_side") else 0.13) * unit)
    draw = ImageDraw.Draw(canvas)
    if figure.has("backpack"):
        _draw_backpack(draw, body, figure, behind=True)
    _draw_lower(draw, body, figure)
    hair_over_body = figure.has("long_hair") and figure.has("view_back")
    if figure.has("long_hair") and not hair_over_body:
        _draw_long_hair(draw, body, figure)
    _draw_upper(draw, body, figure)
    if hair_over_body:
        _draw_long_hair(draw, body, figure)
    _draw_head(draw, body, figure)
    if figure.has("backpack"):
        _draw_backpack(draw, body, figure, behind=False)
    _draw_bags_and_objects(draw, body, figure)

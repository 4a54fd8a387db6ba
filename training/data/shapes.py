"""Outlines of the synthetic benchmark's object shapes, as polygons in unit coordinates.

Every shape is a list of rings of (x, y) points in [-1, 1]^2, the outline first and then the parts cut out of it,
so that the renderer can rotate, scale and rasterise them all the same way.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["SHAPES", "shape_rings"]

Ring = np.ndarray  # [P, 2] float64


def _regular(sides: int, phase: float = 0.0) -> Ring:
    angles = phase + np.arange(sides) * 2 * math.pi / sides
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _ellipse(rx: float, ry: float, points: int = 48, cx: float = 0.0, cy: float = 0.0) -> Ring:
    angles = np.linspace(0, 2 * math.pi, points, endpoint=False)
    return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1)


def _star() -> Ring:
    angles = -math.pi / 2 + np.arange(10) * math.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _heart(points: int = 64) -> Ring:
    t = np.linspace(0, 2 * math.pi, points, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    ring = np.stack([x, y], axis=1)
    return ring / np.abs(ring).max()


def _cross(arm: float = 0.34) -> Ring:
    a = arm
    return np.array([(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1), (-a, a), (-1, a),
                     (-1, -a), (-a, -a)], dtype=np.float64)


def _arrow() -> Ring:
    return np.array([(-1, -0.3), (0.2, -0.3), (0.2, -0.75), (1, 0), (0.2, 0.75), (0.2, 0.3), (-1, 0.3)],
                    dtype=np.float64)


def _bolt() -> Ring:
    return np.array([(-0.25, -1), (0.55, -1), (0.1, -0.2), (0.6, -0.2), (-0.3, 1), (-0.05, 0.15), (-0.55, 0.15)],
                    dtype=np.float64)


def _semicircle(points: int = 32) -> Ring:
    angles = np.linspace(0, math.pi, points)
    return np.stack([np.cos(angles), 0.5 - np.sin(angles)], axis=1)


def _trapezoid() -> Ring:
    return np.array([(-1, 0.6), (1, 0.6), (0.5, -0.6), (-0.5, -0.6)], dtype=np.float64)


SHAPES: dict[str, list[Ring]] = {
    "circle": [_ellipse(1.0, 1.0)],
    "square": [_regular(4, math.pi / 4) / math.cos(math.pi / 4) * 0.8],
    "triangle": [_regular(3, -math.pi / 2)],
    "star": [_star()],
    "hexagon": [_regular(6)],
    "octagon": [_regular(8, math.pi / 8)],
    "pentagon": [_regular(5, -math.pi / 2)],
    "diamond": [np.array([(0, -1), (0.6, 0), (0, 1), (-0.6, 0)], dtype=np.float64)],
    "ring": [_ellipse(1.0, 1.0), _ellipse(0.55, 0.55)],
    "crescent": [_ellipse(1.0, 1.0), _ellipse(0.85, 0.85, cx=0.5)],
    "heart": [_heart()],
    "cross": [_cross()],
    "arrow": [_arrow()],
    "ellipse": [_ellipse(1.0, 0.55)],
    "trapezoid": [_trapezoid()],
    "semicircle": [_semicircle()],
    "bolt": [_bolt()],
}


def shape_rings(
    shape: str, center: tuple[float, float], radius: float, angle: float
) -> list[list[tuple[float, float]]]:
    """Rings of a shape placed in pixel coordinates: rotated by `angle` radians, scaled to `radius` pixels.

    The first ring is filled, every later ring is cut out of it (the hole of a ring, the bite of a crescent).
    """
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    rotation = np.array([[cos_a, -sin_a], [sin_a, cos_a]])
    placed = []
    for ring in SHAPES[shape]:
        points = ring @ rotation.T * radius + np.asarray(center)
        placed.append([(float(x), float(y)) for x, y in points])
    return placed

"""The picture of the hard benchmark in README (docs/hard_scenes.png): what its scenes look like, and its long tail.

    python -m bench.hard_scenes                  # writes docs/hard_scenes.png

The scenes are the first validation images of the hard preset's data, rendered from the same seeds the dataset uses
(so they are exactly what the models are scored on), with the labelled objects' boxes drawn and named; unboxed
shapes are distractors. Below: figures of the hard attributes task, then the label frequencies of both objects
benchmarks, from the labels of 4000 sampled scenes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from training.data.figures import ATTRIBUTES
from training.data.synthetic import ObjectsSpec, render_scene, sample_classes
from training.data.synthetic_attributes import render_figure
from training.data.synthetic_hard import HARD_ATTRIBUTES, HARD_OBJECTS

__all__ = ["render_hard_scenes"]

DOCS = Path(__file__).resolve().parent.parent / "docs"
_VAL_OBJECTS, _VAL_ATTRIBUTES = 1, 11  # the generators' stream ids of the val split (synthetic*.py _SPLIT_IDS)


def _label_frequency(spec: ObjectsSpec, scenes: int = 4000) -> np.ndarray:
    """Share of scenes holding each label, sorted from the most frequent."""
    rng = np.random.default_rng(0)
    counts = np.zeros(len(spec.classes))
    for _ in range(scenes):
        scene = spec.scenes[int(rng.integers(len(spec.scenes)))]
        counts[np.unique(sample_classes(rng, scene, spec))] += 1
    return np.sort(counts / scenes)[::-1]


def render_hard_scenes(path: Path, side: int = 96, seed: int = 0, columns: int = 6) -> Path:
    """Draw two rows of object scenes, a row of attribute figures and the label-frequency plot into `path`."""
    fig = plt.figure(figsize=(2.2 * columns, 11.5), constrained_layout=True)
    grid = fig.add_gridspec(4, 1, height_ratios=[1.25, 1.25, 1.3, 0.9])
    for row in range(2):
        axes = grid[row].subgridspec(1, columns).subplots()
        for column, axis in enumerate(axes):
            index = row * columns + column
            rng = np.random.default_rng(np.random.SeedSequence([seed, _VAL_OBJECTS, index]))
            image, scene, objects = render_scene(rng, side, HARD_OBJECTS)
            axis.imshow(image, interpolation="nearest")
            for obj in objects:
                x, y, w, h = obj.bbox
                axis.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor="lime", linewidth=0.8))
            names = sorted({HARD_OBJECTS.classes[o.class_index].name for o in objects})
            axis.set_title(f"val {index:06d} ({scene})\n" + "\n".join(names), fontsize=6.5, loc="left")
            axis.axis("off")
    axes = grid[2].subgridspec(1, 2 * columns).subplots()
    for index, axis in enumerate(axes):
        rng = np.random.default_rng(np.random.SeedSequence([seed, _VAL_ATTRIBUTES, index]))
        image, attributes = render_figure(rng, side, side // 2, HARD_ATTRIBUTES)
        axis.imshow(image, interpolation="nearest")
        shown = [a for a in ATTRIBUTES if a in attributes and not a.startswith(("view_", "age_adult"))]
        axis.set_title("\n".join(shown[:7]), fontsize=5.5, loc="left")
        axis.axis("off")
    axis = fig.add_subplot(grid[3])
    for spec, name in ((HARD_OBJECTS, f"hard: {len(HARD_OBJECTS.classes)} labels, Zipf class weights"),
                       (ObjectsSpec(), f"standard: {len(ObjectsSpec().classes)} labels")):
        frequency = _label_frequency(spec)
        axis.bar(np.arange(len(frequency)) + (0.2 if spec is HARD_OBJECTS else -0.2), 100 * frequency, width=0.4,
                 label=name)
    axis.set(xlabel="label rank", ylabel="% of scenes with the label", yscale="log")
    axis.set_yticks([1, 2, 5, 10, 20, 30], labels=["1", "2", "5", "10", "20", "30"])
    axis.set_title("label frequency: the hard benchmark's long tail", fontsize=9)
    axis.legend(fontsize=8)
    fig.suptitle("The hard benchmark: val scenes with labelled boxes (unboxed shapes are distractors), and hard "
                 "attribute figures (occluders and edge figures are not labelled)", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DOCS / "hard_scenes.png")
    args = parser.parse_args()
    print(f"wrote {render_hard_scenes(args.out)}")


if __name__ == "__main__":
    main()

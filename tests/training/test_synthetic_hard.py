"""The knobs of the synthetic generators (ObjectsSpec, AttributesSpec) and the hard benchmark built with them: the
defaults still render the original data bit for bit, and the hard variant is what it says (long-tailed, small,
occluded, with unlabelled distractors, co-occurring but not always), deterministically."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from training.data.figures import sample_figure
from training.data.synthetic import (
    OBJECT_CLASSES,
    ObjectClass,
    ObjectsSpec,
    SceneType,
    generate_objects_dataset,
    render_scene,
    sample_classes,
)
from training.data.synthetic_attributes import AttributesSpec, generate_attributes_dataset, render_figure
from training.data.synthetic_hard import HARD_ATTRIBUTES, HARD_OBJECTS, NUM_LABELS

# sha256 of datasets rendered by the generators before they had knobs (main at 50e9985, Pillow 13.0.0, NumPy 2.4.6
# as pinned in constraints.txt): the knobs' defaults must reproduce them byte for byte
_OBJECTS_BEFORE_KNOBS = "5eb39bbec93b2ac0e35cbfe9ff8e5f2a9bb2f03f48e0dfbc937dc1c0123318d9"
_ATTRIBUTES_BEFORE_KNOBS = "658b6d2062e32800941bd300c9e640854f2d15ebc699a5a2fa019f9bfe27c517"


def _digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_default_knobs_render_the_original_datasets_byte_for_byte(tmp_path: Path) -> None:
    generate_objects_dataset(tmp_path / "o", num_train=24, num_val=8, image_size=64, seed=5)
    generate_attributes_dataset(tmp_path / "a", num_train=24, num_val=8, height=64, width=32, seed=5)
    assert _digest(tmp_path / "o") == _OBJECTS_BEFORE_KNOBS
    assert _digest(tmp_path / "a") == _ATTRIBUTES_BEFORE_KNOBS


def test_hard_datasets_are_deterministic(tmp_path: Path) -> None:
    for name, workers, seed in (("a", 1, 3), ("b", 2, 3), ("c", 1, 4)):
        generate_objects_dataset(tmp_path / name / "o", num_train=10, num_val=4, image_size=48, seed=seed,
                                 workers=workers, spec=HARD_OBJECTS)
        generate_attributes_dataset(tmp_path / name / "a", num_train=10, num_val=4, height=48, width=24, seed=seed,
                                    workers=workers, spec=HARD_ATTRIBUTES)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")
    categories = json.loads((tmp_path / "a" / "o" / "annotations" / "instances_val.json").read_text())["categories"]
    assert [c["name"] for c in categories] == [c.name for c in HARD_OBJECTS.classes]


def _sampled_labels(spec: ObjectsSpec, scenes: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """[scenes, C] 0/1 labels and scene names of scenes sampled without rendering."""
    rng = np.random.default_rng(seed)
    targets = np.zeros((scenes, len(spec.classes)))
    names = []
    for row in range(scenes):
        scene = spec.scenes[int(rng.integers(len(spec.scenes)))]
        targets[row, sample_classes(rng, scene, spec)] = 1
        names.append(scene.name)
    return targets, names


def test_hard_labels_are_many_and_long_tailed() -> None:
    assert len(HARD_OBJECTS.classes) == NUM_LABELS >= 40
    frequency = _sampled_labels(HARD_OBJECTS, 20000)[0].mean(axis=0)
    assert frequency.min() > 0, "a label never appears"
    assert frequency.max() / frequency.min() > 15  # the head label is far more frequent than the tail
    ranked = np.sort(frequency)[::-1]
    assert ranked[: NUM_LABELS // 10].sum() > 0.3 * ranked.sum()  # the top 10 % of labels: over 30 % of positives
    assert ranked[-NUM_LABELS // 3:].max() < 0.35 * ranked[0]  # the rarest third: each under a third of the head
    standard = _sampled_labels(ObjectsSpec(), 20000)[0].mean(axis=0)
    assert standard.max() / standard.min() < 3  # the standard benchmark is balanced: the tail is the knob's doing


def test_hard_labels_co_occur_through_scenes_but_not_always() -> None:
    targets, scenes = _sampled_labels(HARD_OBJECTS, 20000)
    index = {c.name: i for i, c in enumerate(HARD_OBJECTS.classes)}
    frequency = targets.mean(axis=0)
    joint = targets.T @ targets / len(targets)
    lift = joint / np.outer(frequency, frequency)
    same_scene = np.zeros_like(lift, dtype=bool)
    for scene in HARD_OBJECTS.scenes:
        typical = [index[name] for name in scene.typical]
        same_scene[np.ix_(typical, typical)] = True
    np.fill_diagonal(same_scene, False)
    others = ~same_scene
    np.fill_diagonal(others, False)
    assert np.median(lift[same_scene]) > 1.5 > 0.8 > np.median(lift[others])
    assert (joint / frequency[:, None])[same_scene].max() < 0.8  # no label implies another
    first = index[HARD_OBJECTS.scenes[0].typical[0]]
    assert targets[np.array(scenes) != HARD_OBJECTS.scenes[0].name, first].mean() > 0  # seen outside its scenes


def _rendered(spec: ObjectsSpec, scenes: int, size: int = 96) -> list:
    return [obj for i in range(scenes) for obj in render_scene(np.random.default_rng([9, i]), size, spec)[2]]


def test_hard_objects_are_small_and_more_occluded() -> None:
    size = 96
    hard, standard = _rendered(HARD_OBJECTS, 60), _rendered(ObjectsSpec(), 60)

    def box_share(objects: list) -> np.ndarray:
        return np.array([o.bbox[2] * o.bbox[3] / size**2 for o in objects])

    assert box_share(hard).min() < 0.015  # boxes down to ~1 % of the image
    assert np.median(box_share(hard)) < min(0.04, 0.75 * np.median(box_share(standard)))  # half under 4 %
    assert (box_share(hard) < 0.05).mean() > 0.5
    visible = np.array([o.visible_pixels / o.pixels for o in hard])
    assert visible.min() >= HARD_OBJECTS.min_visible_fraction - 0.02
    assert (visible < 0.5).any()  # occluded past what the standard benchmark allows
    assert min(o.visible_pixels / o.pixels for o in standard) >= 0.5 - 0.02


def test_distractors_are_drawn_but_never_labelled() -> None:
    red = ObjectClass("red_circle", "circle", (220, 40, 40))
    blue = ObjectClass("blue_square", "square", (40, 80, 220))
    grey = SceneType("grey", ((120, 120, 120), (130, 130, 130)), ("red_circle",))
    spec = ObjectsSpec(classes=(red,), scenes=(grey,), object_count_weights=(1.0,), distractors=(blue,),
                       distractor_count_weights=(0.0, 0.0, 1.0))
    blue_pixels = []
    for i in range(12):
        image, _, objects = render_scene(np.random.default_rng(i), 64, spec)
        assert {o.class_index for o in objects} <= {0}
        pixels = np.asarray(image, dtype=np.int32)
        blue_pixels.append(int((np.abs(pixels - np.array([40, 80, 220])).sum(axis=2) < 90).sum()))
    assert min(blue_pixels) > 20  # two blue squares in every image, and no label for them


def test_hard_distractors_share_a_shape_with_labels_but_never_a_look() -> None:
    label_shapes = {c.shape for c in HARD_OBJECTS.classes}
    looks = {(c.shape, c.color) for c in HARD_OBJECTS.classes}
    assert HARD_OBJECTS.distractors
    for distractor in HARD_OBJECTS.distractors:
        assert distractor.shape in label_shapes and (distractor.shape, distractor.color) not in looks
    with pytest.raises(ValueError, match="exactly like a labelled class"):
        ObjectsSpec(distractors=(OBJECT_CLASSES[0],))
    with pytest.raises(ValueError, match="class_weights"):
        ObjectsSpec(class_weights=(1.0, 2.0))
    with pytest.raises(ValueError, match="duplicate"):
        ObjectsSpec(classes=(OBJECT_CLASSES[0], OBJECT_CLASSES[0]))


def test_hard_figures_keep_their_labels_under_occluders_and_are_smaller() -> None:
    """Attributes are sampled before anything is drawn over the figure: an occluder changes pixels, never labels."""
    for i in range(20):
        plain_image, plain = render_figure(np.random.default_rng([1, i]), 96, 48)
        occluded_image, occluded = render_figure(np.random.default_rng([1, i]), 96, 48,
                                                 AttributesSpec(occluder_probability=1.0))
        assert plain == occluded
        assert np.abs(np.asarray(plain_image, dtype=int) - np.asarray(occluded_image, dtype=int)).max() > 60
    rng = np.random.default_rng(0)
    standard = [sample_figure(rng).height_fraction for _ in range(300)]
    hard_heights = []
    for i in range(300):
        from training.data.synthetic_attributes import _place_figure

        generator = np.random.default_rng([2, i])
        hard_heights.append(_place_figure(generator, HARD_ATTRIBUTES, sample_figure(generator)).height_fraction)
    assert np.mean(hard_heights) < 0.85 * np.mean(standard)
    assert min(hard_heights) < 0.4 < min(standard)


def test_generated_hard_dataset_has_a_long_tail_on_disk(tmp_path: Path) -> None:
    generate_objects_dataset(tmp_path, num_train=150, num_val=1, image_size=48, seed=0, workers=2, spec=HARD_OBJECTS)
    data = json.loads((tmp_path / "annotations" / "instances_train.json").read_text())
    per_label = Counter(a["category_id"] for a in data["annotations"])
    counts = sorted(per_label.values(), reverse=True)
    assert counts[0] >= 8 * counts[-1]
    assert len(data["images"]) == 150


def test_cli_writes_the_hard_variants(tmp_path: Path) -> None:
    from labelserve_tools.cli import main as cli_main

    common = ["--train", "3", "--val", "2", "--image-size", "48", "--workers", "1", "--hard"]
    assert cli_main(["data", "objects", "--out", str(tmp_path / "o"), *common]) == 0
    assert cli_main(["data", "attributes", "--out", str(tmp_path / "a"), *common]) == 0
    data = json.loads((tmp_path / "o" / "annotations" / "instances_train.json").read_text())
    assert len(data["categories"]) == NUM_LABELS
    assert (tmp_path / "a" / "annotations" / "attributes_val.csv").is_file()

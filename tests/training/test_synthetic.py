"""The synthetic benchmark: deterministic, COCO-valid, with the label statistics the design promises."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from training.data.coco import read_coco
from training.data.synthetic import OBJECT_CLASSES, SCENE_TYPES, generate_objects_dataset


def _digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    generate_objects_dataset(tmp_path / "a", num_train=12, num_val=4, image_size=48, seed=3)
    generate_objects_dataset(tmp_path / "b", num_train=12, num_val=4, image_size=48, seed=3, workers=2)
    generate_objects_dataset(tmp_path / "c", num_train=12, num_val=4, image_size=48, seed=4)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_layout_and_coco_schema(tiny_dataset: Path) -> None:
    for split, count in (("train", 64), ("val", 16)):
        data = json.loads((tiny_dataset / "annotations" / f"instances_{split}.json").read_text())
        assert len(data["images"]) == count
        assert [c["name"] for c in data["categories"]] == [c.name for c in OBJECT_CLASSES]
        image_ids = {im["id"] for im in data["images"]}
        for image in data["images"]:
            assert (tiny_dataset / "images" / image["file_name"]).is_file()
            assert image["scene"] in {s.name for s in SCENE_TYPES}
        for ann in data["annotations"]:
            assert ann["image_id"] in image_ids
            x, y, w, h = ann["bbox"]
            assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 64 and y + h <= 64
            assert 0 < ann["area"] <= w * h


def test_label_statistics(tmp_path: Path) -> None:
    """1-6 objects per image, every class appears, and scene types make labels co-occur."""
    generate_objects_dataset(tmp_path, num_train=400, num_val=1, image_size=48, seed=0, workers=2)
    train = read_coco(tmp_path / "annotations" / "instances_train.json")
    data = json.loads((tmp_path / "annotations" / "instances_train.json").read_text())
    per_image = np.bincount([a["image_id"] for a in data["annotations"]], minlength=401)[1:]
    assert per_image.min() >= 1 and per_image.max() <= 6
    targets = train.targets()
    assert targets.sum(axis=0).min() > 0, "some class never appears"
    # co-occurrence: labels typical of the same scene appear together far more often than by chance
    index = {c.name: i for i, c in enumerate(OBJECT_CLASSES)}
    a, b = index["cyan_ring"], index["grey_bolt"]  # both typical of "sky" only
    joint = (targets[:, a] * targets[:, b]).mean()
    assert joint > 1.5 * targets[:, a].mean() * targets[:, b].mean()

"""COCO reader: category order, multi-hot targets, crowd and unlabeled handling, boxes, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.data.coco import read_coco


@pytest.fixture
def coco_file(tmp_path: Path) -> Path:
    data = {
        "images": [{"id": 2, "file_name": "b.jpg", "width": 10, "height": 10},
                   {"id": 1, "file_name": "a.jpg", "width": 10, "height": 10},
                   {"id": 3, "file_name": "c.jpg", "width": 10, "height": 10}],
        "categories": [{"id": 90, "name": "zebra"}, {"id": 1, "name": "person"}, {"id": 18, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 18, "bbox": [1, 2, 3, 4], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 18, "bbox": [5, 5, 2, 2], "iscrowd": 0},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [0, 0, 9, 9], "iscrowd": 0},
            {"id": 4, "image_id": 2, "category_id": 90, "bbox": [0, 0, 5, 5], "iscrowd": 1},
        ],
    }
    path = tmp_path / "annotations" / "instances_val.json"
    path.parent.mkdir()
    path.write_text(json.dumps(data))
    return path


def test_labels_are_categories_by_id(coco_file: Path) -> None:
    assert read_coco(coco_file).labels == ("person", "dog", "zebra")


def test_targets_boxes_and_paths(coco_file: Path) -> None:
    data = read_coco(coco_file)
    first = data.samples[0]  # image id 1 comes first whatever the file order
    assert first.path == coco_file.parent.parent / "images" / "a.jpg"
    np.testing.assert_array_equal(first.target, [1, 1, 0])
    assert first.boxes[1] == [(1.0, 2.0, 3.0, 4.0), (5.0, 5.0, 2.0, 2.0)]
    assert first.size == (10, 10)


def test_crowd_and_unlabeled_options(coco_file: Path) -> None:
    every = read_coco(coco_file)
    assert len(every.samples) == 3
    np.testing.assert_array_equal(every.samples[1].target, [0, 0, 1])  # crowd counts by default
    np.testing.assert_array_equal(every.samples[2].target, [0, 0, 0])  # unlabeled kept as negative
    strict = read_coco(coco_file, include_unlabeled=False, include_crowd=False)
    assert [s.path.name for s in strict.samples] == ["a.jpg"]


def test_image_root_override(coco_file: Path, tmp_path: Path) -> None:
    assert read_coco(coco_file, image_root=tmp_path / "elsewhere").samples[0].path == tmp_path / "elsewhere" / "a.jpg"


def test_errors_name_the_problem(tmp_path: Path, coco_file: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="not a COCO instances file"):
        read_coco(bad)
    data = json.loads(coco_file.read_text())
    data["annotations"].append({"id": 9, "image_id": 1, "category_id": 77, "bbox": [0, 0, 1, 1]})
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="unknown category 77"):
        read_coco(bad)


def test_reads_the_synthetic_dataset(tiny_dataset: Path) -> None:
    data = read_coco(tiny_dataset / "annotations" / "instances_train.json")
    assert len(data.labels) == 20 and len(data.samples) == 64
    assert all(s.path.is_file() for s in data.samples)
    assert all(s.target.sum() >= 1 for s in data.samples)

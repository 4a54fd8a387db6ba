"""VOC folders, CSV/JSONL label lists and attribute tables, on small files written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.data.tabular import read_attribute_table, read_label_list
from training.data.voc import VOC_CLASSES, read_voc

_VOC_XML = """<annotation><size><width>100</width><height>80</height></size>{objects}</annotation>"""
_VOC_OBJECT = ("<object><name>{name}</name><difficult>{difficult}</difficult>"
               "<bndbox><xmin>11</xmin><ymin>21</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>")


@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    images = {"000001": [("dog", 0), ("person", 0), ("dog", 0)], "000002": [("cat", 1)]}
    for image_id, objects in images.items():
        body = "".join(_VOC_OBJECT.format(name=n, difficult=d) for n, d in objects)
        (tmp_path / "Annotations" / f"{image_id}.xml").write_text(_VOC_XML.format(objects=body))
    (tmp_path / "ImageSets" / "Main" / "trainval.txt").write_text("000001\n000002\n")
    return tmp_path


def test_voc_targets_boxes_and_difficult(voc_root: Path) -> None:
    data = read_voc(voc_root)
    assert data.labels == VOC_CLASSES
    dog, person, cat = (VOC_CLASSES.index(n) for n in ("dog", "person", "cat"))
    first, second = data.samples
    assert first.path == voc_root / "JPEGImages" / "000001.jpg"
    assert np.flatnonzero(first.target).tolist() == sorted([dog, person])
    assert first.boxes[dog] == [(10.0, 20.0, 20.0, 20.0)] * 2  # 1-based inclusive -> x, y, w, h
    assert first.size == (100, 80)
    assert second.target[cat] == 1.0
    assert read_voc(voc_root, include_difficult=False).samples[1].target.sum() == 0


def test_voc_errors(voc_root: Path) -> None:
    with pytest.raises(FileNotFoundError, match="VOC folder"):
        read_voc(voc_root, split="test")
    with pytest.raises(ValueError, match="not among the labels"):
        read_voc(voc_root, labels=("dog", "person"))


def test_csv_and_jsonl_lists_agree(tmp_path: Path) -> None:
    (tmp_path / "list.csv").write_text("path,labels\nimg/a.jpg,dog|person\nimg/b.jpg,\nimg/c.jpg, cat \n")
    lines = [{"path": "img/a.jpg", "labels": ["dog", "person"]}, {"path": "img/b.jpg", "labels": []},
             {"path": "img/c.jpg", "labels": ["cat"]}]
    (tmp_path / "list.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    from_csv, from_jsonl = read_label_list(tmp_path / "list.csv"), read_label_list(tmp_path / "list.jsonl")
    assert from_csv.labels == from_jsonl.labels == ("cat", "dog", "person")
    np.testing.assert_array_equal(from_csv.targets(), [[0, 1, 1], [0, 0, 0], [1, 0, 0]])
    np.testing.assert_array_equal(from_csv.targets(), from_jsonl.targets())
    assert from_csv.samples[0].path == tmp_path / "img" / "a.jpg"


def test_list_with_fixed_label_order(tmp_path: Path) -> None:
    (tmp_path / "val.csv").write_text("path,labels\na.jpg,person\n")
    data = read_label_list(tmp_path / "val.csv", labels=("person", "dog"))
    np.testing.assert_array_equal(data.targets(), [[1, 0]])
    with pytest.raises(ValueError, match="not among"):
        read_label_list(tmp_path / "val.csv", labels=("dog",))
    (tmp_path / "bad.csv").write_text("file,tags\na.jpg,x\n")
    with pytest.raises(ValueError, match="header"):
        read_label_list(tmp_path / "bad.csv")


def test_attribute_table(tmp_path: Path) -> None:
    (tmp_path / "attrs.csv").write_text("path,female,hat,backpack\np/1.jpg,1,0,1\np/2.jpg,0,0,0\n")
    data = read_attribute_table(tmp_path / "attrs.csv")
    assert data.labels == ("female", "hat", "backpack")
    np.testing.assert_array_equal(data.targets(), [[1, 0, 1], [0, 0, 0]])
    (tmp_path / "bad.csv").write_text("path,a\np.jpg,2\n")
    with pytest.raises(ValueError, match="0 or 1"):
        read_attribute_table(tmp_path / "bad.csv")
    (tmp_path / "short.csv").write_text("path,a,b\np.jpg,1\n")
    with pytest.raises(ValueError, match="cells"):
        read_attribute_table(tmp_path / "short.csv")


def test_read_split_dispatches_and_enforces_label_order(voc_root: Path, tmp_path: Path) -> None:
    from training.data.readers import read_split

    voc = read_split("voc", voc_root / "ImageSets" / "Main" / "trainval.txt")
    assert len(voc.samples) == 2 and voc.labels == VOC_CLASSES
    (tmp_path / "train.csv").write_text("path,labels\na.jpg,dog\nb.jpg,cat\n")
    (tmp_path / "val.csv").write_text("path,labels\nc.jpg,cat\n")
    train = read_split("list", tmp_path / "train.csv")
    val = read_split("list", tmp_path / "val.csv", labels=train.labels)
    np.testing.assert_array_equal(val.targets(), [[1, 0]])  # columns follow the training split
    (tmp_path / "attrs.csv").write_text("path,x,y\na.jpg,1,0\n")
    with pytest.raises(ValueError, match="were expected"):
        read_split("attributes", tmp_path / "attrs.csv", labels=("y", "x"))

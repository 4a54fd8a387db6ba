"""VOC folders, CSV/JSONL label lists and attribute tables, on small files written here; every mistake in them is a
DataError naming the file and line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from labelserve.errors import DataError
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
    data = read_voc(voc_root, labels=VOC_CLASSES)
    assert data.labels == VOC_CLASSES
    dog, person, cat = (VOC_CLASSES.index(n) for n in ("dog", "person", "cat"))
    first, second = data.samples
    assert first.path == voc_root / "JPEGImages" / "000001.jpg"
    assert np.flatnonzero(first.target).tolist() == sorted([dog, person])
    assert first.boxes[dog] == [(10.0, 20.0, 20.0, 20.0)] * 2  # 1-based inclusive -> x, y, w, h
    assert first.size == (100, 80)
    assert second.target[cat] == 1.0
    assert first.source == f"{voc_root / 'ImageSets' / 'Main' / 'trainval.txt'}:1"
    assert read_voc(voc_root, include_difficult=False).samples[1].target.sum() == 0


def test_voc_labels_are_the_classes_found_unless_they_are_the_20_of_pascal_voc(voc_root: Path) -> None:
    """A user's own VOC folder names its own classes; before issue 19 any class outside Pascal VOC's 20 failed."""
    assert read_voc(voc_root).labels == ("cat", "dog", "person")
    body = "".join(_VOC_OBJECT.format(name=name, difficult=0) for name in reversed(VOC_CLASSES))
    (voc_root / "Annotations" / "000003.xml").write_text(_VOC_XML.format(objects=body))
    (voc_root / "ImageSets" / "Main" / "all.txt").write_text("000003\n")
    assert read_voc(voc_root, split="all").labels == VOC_CLASSES  # their customary order, not sorted


def test_voc_errors(voc_root: Path) -> None:
    with pytest.raises(DataError, match="VOC folder"):
        read_voc(voc_root, split="test")
    with pytest.raises(DataError, match="not among the training split's labels"):
        read_voc(voc_root, labels=("dog", "person"))
    (voc_root / "ImageSets" / "Main" / "broken.txt").write_text("000001\n\n000009\n")
    with pytest.raises(DataError, match=r"broken\.txt:3: .*000009\.xml does not exist"):
        read_voc(voc_root, split="broken")


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
    with pytest.raises(DataError, match=r"val\.csv:2: label 'person' is not among"):
        read_label_list(tmp_path / "val.csv", labels=("dog",))
    (tmp_path / "bad.csv").write_text("file,tags\na.jpg,x\n")
    with pytest.raises(DataError, match=r"bad\.csv:1: the header must be path,labels"):
        read_label_list(tmp_path / "bad.csv")


def test_list_mistakes_name_the_line(tmp_path: Path) -> None:
    (tmp_path / "commas.csv").write_text("path,labels\na.jpg,dog\nb.jpg,dog,person\n")
    with pytest.raises(DataError, match=r"commas\.csv:3: 3 cells .*join labels with \|"):
        read_label_list(tmp_path / "commas.csv")
    (tmp_path / "list.jsonl").write_text('{"path": "a.jpg", "labels": ["x"]}\n{"path": "b.jpg", "labels": "x"}\n')
    with pytest.raises(DataError, match=r"list\.jsonl:2: need"):
        read_label_list(tmp_path / "list.jsonl")


def test_a_byte_order_mark_and_blank_lines_are_read_as_excel_writes_them(tmp_path: Path) -> None:
    (tmp_path / "excel.csv").write_bytes("\ufeffpath,labels\r\na.jpg,dog|cat\r\n\r\nb.jpg,\r\n".encode())
    data = read_label_list(tmp_path / "excel.csv")
    assert data.labels == ("cat", "dog") and [s.source.rsplit(":", 1)[1] for s in data.samples] == ["2", "4"]


def test_attribute_table(tmp_path: Path) -> None:
    (tmp_path / "attrs.csv").write_text("path,female,hat,backpack\np/1.jpg,1,0,1\np/2.jpg,0,0,0\n")
    data = read_attribute_table(tmp_path / "attrs.csv")
    assert data.labels == ("female", "hat", "backpack")
    np.testing.assert_array_equal(data.targets(), [[1, 0, 1], [0, 0, 0]])
    (tmp_path / "bad.csv").write_text("path,a\np.jpg,2\n")
    with pytest.raises(DataError, match=r"bad\.csv:2: .*0 or 1"):
        read_attribute_table(tmp_path / "bad.csv")
    (tmp_path / "short.csv").write_text("path,a,b\np.jpg,1\n")
    with pytest.raises(DataError, match=r"short\.csv:2: 2 cells"):
        read_attribute_table(tmp_path / "short.csv")


def test_read_split_dispatches_and_enforces_label_order(voc_root: Path, tmp_path: Path) -> None:
    from training.data.readers import read_split

    voc = read_split("voc", voc_root / "ImageSets" / "Main" / "trainval.txt")
    assert len(voc.samples) == 2 and voc.labels == ("cat", "dog", "person")
    (tmp_path / "train.csv").write_text("path,labels\na.jpg,dog\nb.jpg,cat\n")
    (tmp_path / "val.csv").write_text("path,labels\nc.jpg,cat\n")
    train = read_split("list", tmp_path / "train.csv")
    val = read_split("list", tmp_path / "val.csv", labels=train.labels)
    np.testing.assert_array_equal(val.targets(), [[1, 0]])  # columns follow the training split
    (tmp_path / "attrs.csv").write_text("path,x,y\na.jpg,1,0\n")
    with pytest.raises(DataError, match="were expected"):
        read_split("attributes", tmp_path / "attrs.csv", labels=("y", "x"))
    with pytest.raises(DataError, match=r"ImageSets/Main/<split>\.txt"):
        read_split("voc", tmp_path / "train.csv")

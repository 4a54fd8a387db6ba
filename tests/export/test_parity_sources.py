"""The parity images an export finds by itself: the validation split the checkpoint records, read in its own format
(issue 19: only COCO's layout was searched, so CSV and VOC exports failed with a message naming a Python argument)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from export.repository import checkpoint_val_images
from labelserve.errors import ExportError


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (200, 30, 30)).save(path)
    return path


def _config(fmt: str, val: Path, image_root: Path | None = None, val_image_root: Path | None = None) -> dict:
    return {"data": {"format": fmt, "val_annotations": str(val), "image_root": str(image_root) if image_root else None,
                     "val_image_root": str(val_image_root) if val_image_root else None}}


def test_each_format_yields_its_validation_images(tmp_path: Path) -> None:
    photo = _image(tmp_path / "list" / "img" / "a.jpg")
    (tmp_path / "list" / "val.csv").write_text("path,labels\nimg/a.jpg,cat\nimg/gone.jpg,cat\n")
    assert checkpoint_val_images(_config("list", tmp_path / "list" / "val.csv")) == [photo]  # the missing one skipped

    table = _image(tmp_path / "table" / "p" / "b.png")
    (tmp_path / "table" / "val.csv").write_text("path,hat\np/b.png,1\n")
    assert checkpoint_val_images(_config("attributes", tmp_path / "table" / "val.csv")) == [table]

    voc = tmp_path / "voc"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "Annotations" / "0001.xml").write_text("<annotation><object><name>cat</name></object></annotation>")
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "ImageSets" / "Main" / "val.txt").write_text("0001\n")
    jpeg = _image(voc / "JPEGImages" / "0001.jpg")
    assert checkpoint_val_images(_config("voc", voc / "ImageSets" / "Main" / "val.txt")) == [jpeg]

    coco = _image(tmp_path / "coco" / "pictures" / "c.jpg")
    (tmp_path / "coco" / "val.json").write_text('{"images": [{"id": 1, "file_name": "c.jpg"}], "annotations": [], '
                                                '"categories": [{"id": 1, "name": "cat"}]}')
    assert checkpoint_val_images(_config("coco", tmp_path / "coco" / "val.json", coco.parent)) == [coco]
    assert checkpoint_val_images(_config("coco", tmp_path / "coco" / "val.json", tmp_path, coco.parent)) == [coco]


def test_when_none_can_be_found_the_message_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"the checkpoint names no validation split; pass --parity-images"):
        checkpoint_val_images({"data": {}})
    with pytest.raises(ExportError, match=r"cannot be read here \(data.val_annotations .*moved.csv does not exist.*"
                                          r"pass --parity-images"):
        checkpoint_val_images(_config("list", tmp_path / "moved.csv"))
    (tmp_path / "val.csv").write_text("path,labels\nimg/a.jpg,cat\n")
    with pytest.raises(ExportError, match=r"none of the 1 images .* exists here; pass --parity-images"):
        checkpoint_val_images(_config("list", tmp_path / "val.csv"))

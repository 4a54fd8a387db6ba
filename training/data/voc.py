"""Pascal VOC folders -> multi-label samples.

Layout: `<root>/Annotations/<id>.xml`, `<root>/JPEGImages/<id>.jpg`, `<root>/ImageSets/Main/<split>.txt`. Labels are
the object names found in the split, sorted, unless given (pass the training split's labels when reading
validation); a split that names exactly the 20 VOC classes keeps their customary order. Objects marked `difficult`
count as present unless `include_difficult=False` (ML-GCN marks such labels "ignore" instead; a 0/1 target cannot).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from labelserve.errors import DataError
from training.data.samples import Box, MultiLabelSample, MultiLabelSet

__all__ = ["VOC_CLASSES", "read_voc"]

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)

_Objects = list[tuple[str, Box, bool]]


def _objects(xml_path: Path, where: str) -> tuple[_Objects, tuple[int, int] | None]:
    if not xml_path.is_file():
        raise DataError(f"{where}: {xml_path} does not exist (every image of the split needs Annotations/<id>.xml)")
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        raise DataError(f"{xml_path}: not valid XML ({exc})") from exc
    size_node = root.find("size")
    size = None
    if size_node is not None:
        size = (int(float(size_node.findtext("width", "0"))), int(float(size_node.findtext("height", "0"))))
    objects = []
    for node in root.iter("object"):
        name = (node.findtext("name") or "").strip()
        if not name:
            raise DataError(f"{xml_path}: an <object> without a <name>")
        difficult = (node.findtext("difficult") or "0").strip() == "1"
        box_node = node.find("bndbox")
        box: Box = (0.0, 0.0, 0.0, 0.0)
        if box_node is not None:
            x1, y1, x2, y2 = (float(box_node.findtext(k, "0")) for k in ("xmin", "ymin", "xmax", "ymax"))
            box = (x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1)  # VOC is 1-based and inclusive
        objects.append((name, box, difficult))
    return objects, size


def _default_labels(names: set[str]) -> tuple[str, ...]:
    return VOC_CLASSES if names == set(VOC_CLASSES) else tuple(sorted(names))


def read_voc(
    root: Path, split: str = "trainval", labels: tuple[str, ...] | None = None, include_difficult: bool = True
) -> MultiLabelSet:
    """Read one split of a VOC-style folder.

    Args:
        root: the folder holding Annotations/, JPEGImages/ and ImageSets/Main/.
        split: name of the image-set file (`train`, `val`, `trainval`, `test`).
        labels: class names in column order (default: the names the split's objects carry); an object of another
            class is an error.
        include_difficult: count objects marked difficult as present.
    """
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not split_file.is_file():
        raise DataError(f"{split_file} is missing: is {root} a VOC folder (Annotations/, JPEGImages/, "
                        "ImageSets/Main/<split>.txt)?")
    entries = []
    for number, line in enumerate(split_file.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if line.strip():
            where = f"{split_file}:{number}"
            image_id = line.split()[0]
            entries.append((where, image_id, *_objects(root / "Annotations" / f"{image_id}.xml", where)))
    names = labels if labels is not None else _default_labels({o[0] for *_, objects, _ in entries for o in objects})
    column = {name: i for i, name in enumerate(names)}
    samples = []
    for where, image_id, objects, size in entries:
        target = np.zeros(len(names), dtype=np.float32)
        boxes: dict[int, list[Box]] = {}
        for name, box, difficult in objects:
            if name not in column:
                raise DataError(f"{root / 'Annotations' / image_id}.xml ({where}) names class {name!r}, which is not "
                                f"among the training split's labels {names}")
            if difficult and not include_difficult:
                continue
            target[column[name]] = 1.0
            boxes.setdefault(column[name], []).append(box)
        samples.append(MultiLabelSample(root / "JPEGImages" / f"{image_id}.jpg", target, boxes, size, where))
    return MultiLabelSet(tuple(names), tuple(samples))

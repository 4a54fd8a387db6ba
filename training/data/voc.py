"""Pascal VOC folders -> multi-label samples.

Layout: `<root>/Annotations/<id>.xml`, `<root>/JPEGImages/<id>.jpg`, `<root>/ImageSets/Main/<split>.txt`. Labels
default to the 20 VOC classes in their customary order; objects marked `difficult` count as present unless
`include_difficult=False` (ML-GCN marks such labels "ignore" instead; a 0/1 target cannot).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from training.data.samples import Box, MultiLabelSample, MultiLabelSet

__all__ = ["VOC_CLASSES", "read_voc"]

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


def _objects(xml_path: Path) -> tuple[list[tuple[str, Box, bool]], tuple[int, int] | None]:
    root = ET.parse(xml_path).getroot()
    size_node = root.find("size")
    size = None
    if size_node is not None:
        size = (int(float(size_node.findtext("width", "0"))), int(float(size_node.findtext("height", "0"))))
    objects = []
    for node in root.iter("object"):
        name = (node.findtext("name") or "").strip()
        difficult = (node.findtext("difficult") or "0").strip() == "1"
        box_node = node.find("bndbox")
        box: Box = (0.0, 0.0, 0.0, 0.0)
        if box_node is not None:
            x1, y1, x2, y2 = (float(box_node.findtext(k, "0")) for k in ("xmin", "ymin", "xmax", "ymax"))
            box = (x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1)  # VOC is 1-based and inclusive
        objects.append((name, box, difficult))
    return objects, size


def read_voc(
    root: Path, split: str = "trainval", labels: tuple[str, ...] = VOC_CLASSES, include_difficult: bool = True
) -> MultiLabelSet:
    """Read one split of a VOC-style folder.

    Args:
        root: the folder holding Annotations/, JPEGImages/ and ImageSets/Main/.
        split: name of the image-set file (`train`, `val`, `trainval`, `test`).
        labels: class names in column order; an object of another class is an error.
        include_difficult: count objects marked difficult as present.
    """
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not split_file.is_file():
        raise FileNotFoundError(f"{split_file} is missing: is {root} a VOC folder?")
    column = {name: i for i, name in enumerate(labels)}
    samples = []
    for image_id in (line.split()[0] for line in split_file.read_text().splitlines() if line.strip()):
        objects, size = _objects(root / "Annotations" / f"{image_id}.xml")
        target = np.zeros(len(labels), dtype=np.float32)
        boxes: dict[int, list[Box]] = {}
        for name, box, difficult in objects:
            if name not in column:
                raise ValueError(f"{image_id}.xml names class {name!r}, which is not among the labels {labels}")
            if difficult and not include_difficult:
                continue
            target[column[name]] = 1.0
            boxes.setdefault(column[name], []).append(box)
        samples.append(MultiLabelSample(root / "JPEGImages" / f"{image_id}.jpg", target, boxes, size))
    return MultiLabelSet(tuple(labels), tuple(samples))

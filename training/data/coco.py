"""COCO instances json -> multi-label samples (image path, multi-hot target, boxes per label).

Works on any COCO-style instances file (MS-COCO 2014/2017, the synthetic benchmark). Labels are the categories
ordered by id; an image's target is the set of categories of its non-crowd annotations (crowd regions still name
a present class, so they count too unless `include_crowd=False`). Images without annotations are kept as all-negative
rows by default, as Query2Label's loader does; ASL and ML-Decoder drop them (`include_unlabeled=False`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from training.data.samples import Box, MultiLabelSample, MultiLabelSet

__all__ = ["read_coco"]

def read_coco(
    annotation_file: Path,
    image_root: Path | None = None,
    include_unlabeled: bool = True,
    include_crowd: bool = True,
) -> MultiLabelSet:
    """Read a COCO instances file into multi-label samples.

    Args:
        annotation_file: `instances_*.json`.
        image_root: folder that `file_name` is relative to; defaults to `<annotation folder>/../images`.
        include_unlabeled: keep images that have no annotation, as all-negative targets.
        include_crowd: let `iscrowd=1` annotations mark their class present.
    """
    data = json.loads(Path(annotation_file).read_text(encoding="utf-8"))
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise ValueError(f"{annotation_file} is not a COCO instances file: no {key!r} key")
    root = image_root if image_root is not None else Path(annotation_file).resolve().parent.parent / "images"
    categories = sorted(data["categories"], key=lambda c: c["id"])
    column = {c["id"]: i for i, c in enumerate(categories)}
    labels = tuple(c["name"] for c in categories)

    boxes_by_image: dict[int, dict[int, list[Box]]] = defaultdict(lambda: defaultdict(list))
    for ann in data["annotations"]:
        if ann.get("iscrowd", 0) and not include_crowd:
            continue
        if ann["category_id"] not in column:
            raise ValueError(f"annotation {ann.get('id')} names unknown category {ann['category_id']}")
        box = tuple(float(v) for v in ann.get("bbox", (0, 0, 0, 0)))
        boxes_by_image[ann["image_id"]][column[ann["category_id"]]].append(box)

    samples = []
    for image in sorted(data["images"], key=lambda im: im["id"]):
        per_label = boxes_by_image.get(image["id"], {})
        if not per_label and not include_unlabeled:
            continue
        target = np.zeros(len(labels), dtype=np.float32)
        target[list(per_label)] = 1.0
        size = (image["width"], image["height"]) if "width" in image and "height" in image else None
        samples.append(MultiLabelSample(root / image["file_name"], target, dict(per_label), size))
    return MultiLabelSet(labels, tuple(samples))

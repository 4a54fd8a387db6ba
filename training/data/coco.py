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

from labelserve.errors import DataError
from training.data.samples import Box, MultiLabelSample, MultiLabelSet

__all__ = ["read_coco"]


def _load(annotation_file: Path) -> dict:
    """The instances file's content, checked for what the reader uses; DataError naming the file otherwise."""
    try:
        data = json.loads(annotation_file.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{annotation_file} is not JSON ({exc.msg}, line {exc.lineno}) but data.format is coco: a "
                        "COCO instances file is JSON; for another format set data.format") from exc
    if not isinstance(data, dict):
        raise DataError(f"{annotation_file} is not a COCO instances file: its JSON is not an object")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise DataError(f"{annotation_file} is not a COCO instances file: no {key!r} key")
    for kind, needed in (("images", ("id", "file_name")), ("categories", ("id", "name")),
                         ("annotations", ("image_id", "category_id"))):
        for entry in data[kind]:
            if not isinstance(entry, dict) or any(k not in entry for k in needed):
                raise DataError(f"{annotation_file}: every entry of {kind!r} needs {', '.join(needed)}; got "
                                f"{json.dumps(entry)[:80]}")
    return data


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
    data = _load(Path(annotation_file))
    root = image_root if image_root is not None else Path(annotation_file).resolve().parent.parent / "images"
    categories = sorted(data["categories"], key=lambda c: c["id"])
    column = {c["id"]: i for i, c in enumerate(categories)}
    labels = tuple(c["name"] for c in categories)

    boxes_by_image: dict[int, dict[int, list[Box]]] = defaultdict(lambda: defaultdict(list))
    for ann in data["annotations"]:
        if ann.get("iscrowd", 0) and not include_crowd:
            continue
        if ann.get("category_id") not in column:
            raise DataError(f"{annotation_file}: annotation {ann.get('id')} names unknown category "
                            f"{ann.get('category_id')}; the categories are {sorted(column)}")
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
        source = f"{annotation_file} image id {image['id']}"
        samples.append(MultiLabelSample(root / image["file_name"], target, dict(per_label), size, source))
    return MultiLabelSet(labels, tuple(samples))

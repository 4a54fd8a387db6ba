"""One entry point over every dataset format, so the training config names a format and two files."""

from __future__ import annotations

from pathlib import Path

from labelserve.errors import DataError
from training.data.coco import read_coco
from training.data.formats import DatasetFormat
from training.data.samples import MultiLabelSet
from training.data.tabular import read_attribute_table, read_label_list
from training.data.voc import read_voc

__all__ = ["DatasetFormat", "read_split"]


def read_split(
    fmt: DatasetFormat,
    path: Path,
    image_root: Path | None = None,
    labels: tuple[str, ...] | None = None,
    include_unlabeled: bool = True,
) -> MultiLabelSet:
    """Read one split.

    Args:
        fmt: `coco` (instances json), `voc` (the split file `<root>/ImageSets/Main/<split>.txt`), `list` (CSV or
            JSONL of path + labels) or `attributes` (CSV of 0/1 columns); `training.data.formats.resolve_format`
            infers it from the file.
        path: the split's file.
        image_root: for COCO, the folder `file_name` is relative to.
        labels: column order to enforce (the training split's labels when reading validation).
        include_unlabeled: keep images without any label (COCO).

    Raises:
        DataError: the file does not hold a dataset of that format, or its labels differ from `labels`.
    """
    if fmt == "coco":
        data = read_coco(path, image_root, include_unlabeled=include_unlabeled)
    elif fmt == "voc":
        if path.parent.name != "Main" or path.parent.parent.name != "ImageSets":
            raise DataError(f"{path}: a VOC split is the image-set file <root>/ImageSets/Main/<split>.txt beside "
                            "<root>/Annotations and <root>/JPEGImages")
        data = read_voc(path.parents[2], split=path.stem, labels=labels)
    elif fmt == "list":
        data = read_label_list(path, labels)
    elif fmt == "attributes":
        data = read_attribute_table(path)
    else:
        raise DataError(f"unknown data.format {fmt!r}; use coco, voc, list or attributes")
    if labels is not None and data.labels != labels:
        missing, extra = set(labels) - set(data.labels), set(data.labels) - set(labels)
        raise DataError(f"{path} has labels {data.labels[:5]}... but the training split's {labels[:5]}... were "
                        f"expected (only in training: {sorted(missing)}, only here: {sorted(extra)}; same order "
                        "needed)")
    return data

"""Which reader an annotation file needs: inferred from its name and first line where that is unambiguous, and
checked against `data.format` where one is set, so a wrong format is one line naming the file and `data.format`
instead of a parser's error deep inside the wrong reader.

- `*.json`: COCO instances (`coco`); `*.jsonl`: a list of `{"path", "labels"}` objects (`list`);
- `<root>/ImageSets/Main/<split>.txt`: a Pascal VOC image set (`voc`);
- `*.csv` with the header `path,labels`: a list (`list`); with `path,<attribute>,...`: 0/1 columns (`attributes`).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal, get_args

from labelserve.errors import DataError

__all__ = ["DatasetFormat", "infer_format", "resolve_format"]

DatasetFormat = Literal["coco", "voc", "list", "attributes"]
_FORMATS: tuple[str, ...] = get_args(DatasetFormat)
_GUIDE = "docs/own-images.md"
_CHOICES = "coco, voc, list or attributes"


def _csv_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: Excel writes a byte-order mark first
        return [cell.strip() for cell in next(csv.reader(handle), [])]


def infer_format(path: Path) -> tuple[tuple[DatasetFormat, ...], str]:
    """The formats `path` can be read as (the likeliest first; none when its name and header do not say) and what
    it looks like, for messages."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        return ("coco",), "a .json file (COCO instances)"
    if suffix == ".jsonl":
        return ("list",), 'a .jsonl file (a list: one {"path": ..., "labels": [...]} per line)'
    if path.parent.name == "Main" and path.parent.parent.name == "ImageSets":
        return ("voc",), "a Pascal VOC image set (ImageSets/Main/<split>.txt)"
    if suffix == ".csv":
        header = _csv_header(path)
        if header == ["path", "labels"]:  # also a valid table of one attribute called "labels"
            return ("list", "attributes"), "a CSV list (header path,labels)"
        if len(header) > 1 and header[0] == "path":
            return ("attributes",), f"a CSV attribute table (header path,{','.join(header[1:4])}...)"
        return (), (f"a CSV whose header {','.join(header) or '(empty)'} is neither path,labels (a list) nor "
                    "path,<attribute>,... (an attribute table)")
    return (), f"a {suffix or 'suffix-less'} file, none of the formats' (.json, .jsonl, .csv, ImageSets/Main/*.txt)"


def resolve_format(configured: str, path: Path, key: str) -> DatasetFormat:
    """The format to read `path` (the value of config key `key`) with.

    Args:
        configured: `data.format`: `auto` (infer it) or one of coco, voc, list, attributes.
        path: the annotation file.
        key: the config key that named it, for messages (`data.train_annotations`).

    Raises:
        DataError: the file is missing, its format cannot be told, or it is not in the configured format.
    """
    if not str(path) or str(path) == ".":
        raise DataError(f"{key} is not set: pass --set {key}=<annotation file> (formats: {_GUIDE})")
    if path.is_dir():
        raise DataError(f"{key} {path} is a folder; name the annotation file (COCO: instances_<split>.json, VOC: "
                        f"<root>/ImageSets/Main/<split>.txt, list or attributes: a .csv; {_GUIDE})")
    if not path.is_file():
        where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
        raise DataError(f"{key} {path} does not exist{where}")
    formats, looks = infer_format(path)
    if configured == "auto":
        if not formats:
            raise DataError(f"cannot tell the format of {path} ({key}): it is {looks}; set data.format to "
                            f"{_CHOICES} ({_GUIDE})")
        return formats[0]
    if configured not in _FORMATS:
        raise DataError(f"data.format {configured!r} is not one of auto, {_CHOICES}")
    if formats and configured not in formats:
        raise DataError(f"{path} is {looks}, not data.format {configured}: set data.format={formats[0]}, or leave "
                        "data.format out to infer it")
    return configured  # type: ignore[return-value]  (checked against _FORMATS above)

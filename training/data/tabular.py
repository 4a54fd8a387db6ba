"""Flat-file datasets: a CSV/JSONL list of `path, labels`, and an attribute table of 0/1 columns.

- List (CSV): header `path,labels`, labels joined by `|` (`img/1.jpg,dog|person`); an empty cell = no label.
- List (JSONL): one object per line, `{"path": "img/1.jpg", "labels": ["dog", "person"]}`.
- Attribute table (CSV): header `path,<attr 1>,<attr 2>,...`, one 0/1 cell per attribute (like PA-100K's tables).

Paths are relative to the file's folder unless absolute. For list files the label order is the sorted union of all
labels unless `labels` is given (pass the training split's labels when reading validation, so columns agree).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from training.data.samples import MultiLabelSample, MultiLabelSet

__all__ = ["read_attribute_table", "read_label_list"]


def _rows(path: Path) -> Iterable[tuple[str, list[str]]]:
    if path.suffix.lower() == ".jsonl":
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            if "path" not in record or not isinstance(record.get("labels", []), list):
                raise ValueError(f"{path}:{number}: need {{'path': str, 'labels': [str, ...]}}, got {record}")
            yield record["path"], [str(label) for label in record.get("labels", [])]
        return
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"path", "labels"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: the CSV header must name 'path' and 'labels', got {reader.fieldnames}")
        for row in reader:
            yield row["path"], [label.strip() for label in (row["labels"] or "").split("|") if label.strip()]


def read_label_list(path: Path, labels: tuple[str, ...] | None = None) -> MultiLabelSet:
    """Read a CSV (`path,labels` with `|` separators) or JSONL list of images and their labels."""
    rows = list(_rows(path))
    names = labels if labels is not None else tuple(sorted({label for _, row_labels in rows for label in row_labels}))
    column = {name: i for i, name in enumerate(names)}
    samples = []
    for image, row_labels in rows:
        target = np.zeros(len(names), dtype=np.float32)
        for label in row_labels:
            if label not in column:
                raise ValueError(f"{path}: image {image} has label {label!r}, which is not among {names}")
            target[column[label]] = 1.0
        samples.append(MultiLabelSample(path.parent / image, target))
    return MultiLabelSet(names, tuple(samples))


def read_attribute_table(path: Path) -> MultiLabelSet:
    """Read a CSV whose first column is `path` and every other column a 0/1 attribute."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header or header[0] != "path" or len(header) < 2:
            raise ValueError(f"{path}: the header must be 'path,<attribute>,...', got {header}")
        names = tuple(header[1:])
        samples = []
        for number, row in enumerate(reader, start=2):
            if len(row) != len(header):
                raise ValueError(f"{path}:{number}: {len(row)} cells for {len(header)} columns")
            try:
                values = [int(cell) for cell in row[1:]]
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: attribute cells must be 0 or 1") from exc
            if any(v not in (0, 1) for v in values):
                raise ValueError(f"{path}:{number}: attribute cells must be 0 or 1, got {values}")
            samples.append(MultiLabelSample(path.parent / row[0], np.asarray(values, dtype=np.float32)))
    return MultiLabelSet(names, tuple(samples))

"""Flat-file datasets: a CSV/JSONL list of `path, labels`, and an attribute table of 0/1 columns.

- List (CSV): header `path,labels`, labels joined by `|` (`img/1.jpg,dog|person`); an empty cell = no label.
- List (JSONL): one object per line, `{"path": "img/1.jpg", "labels": ["dog", "person"]}`.
- Attribute table (CSV): header `path,<attr 1>,<attr 2>,...`, one 0/1 cell per attribute (like PA-100K's tables).

Paths are relative to the file's folder unless absolute. For list files the label order is the sorted union of all
labels unless `labels` is given (pass the training split's labels when reading validation, so columns agree). Every
mistake is a `DataError` naming the file and line.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from labelserve.errors import DataError
from training.data.samples import MultiLabelSample, MultiLabelSet

__all__ = ["read_attribute_table", "read_label_list"]


def _jsonl_rows(path: Path) -> Iterable[tuple[int, str, list[str]]]:
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}: not JSON ({exc.msg}); each line is "
                            '{"path": "img/1.jpg", "labels": ["dog", "person"]}') from exc
        if not isinstance(record, dict) or not isinstance(record.get("path"), str) \
                or not isinstance(record.get("labels", []), list):
            raise DataError(f'{path}:{number}: need {{"path": str, "labels": [str, ...]}}, got {line.strip()[:80]}')
        yield number, record["path"], [str(label) for label in record.get("labels", [])]


def _csv_rows(path: Path) -> Iterable[tuple[int, str, list[str]]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: Excel writes a byte-order mark first
        reader = csv.reader(handle)
        header = [cell.strip() for cell in next(reader, [])]
        if header != ["path", "labels"]:
            raise DataError(f"{path}:1: the header must be path,labels (labels joined by |), got "
                            f"{','.join(header) or 'an empty line'}")
        for row in reader:
            number = reader.line_num
            if not row or not "".join(row).strip():
                continue
            if len(row) > 2:
                raise DataError(f"{path}:{number}: {len(row)} cells for the 2 columns path,labels: join labels with "
                                "| (dog|person), and quote a path that holds a comma")
            image, labels = row[0].strip(), row[1] if len(row) > 1 else ""
            if not image:
                raise DataError(f"{path}:{number}: the path cell is empty")
            yield number, image, [label.strip() for label in labels.split("|") if label.strip()]


def read_label_list(path: Path, labels: tuple[str, ...] | None = None) -> MultiLabelSet:
    """Read a CSV (`path,labels` with `|` separators) or JSONL list of images and their labels."""
    rows = list(_jsonl_rows(path) if path.suffix.lower() == ".jsonl" else _csv_rows(path))
    names = labels if labels is not None else tuple(sorted({label for *_, row_labels in rows for label in row_labels}))
    column = {name: i for i, name in enumerate(names)}
    samples = []
    for number, image, row_labels in rows:
        target = np.zeros(len(names), dtype=np.float32)
        for label in row_labels:
            if label not in column:
                raise DataError(f"{path}:{number}: label {label!r} is not among the training split's labels {names}")
            target[column[label]] = 1.0
        samples.append(MultiLabelSample(path.parent / image, target, source=f"{path}:{number}"))
    return MultiLabelSet(names, tuple(samples))


def read_attribute_table(path: Path) -> MultiLabelSet:
    """Read a CSV whose first column is `path` and every other column a 0/1 attribute."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [cell.strip() for cell in next(reader, [])]
        if not header or header[0] != "path" or len(header) < 2:
            raise DataError(f"{path}:1: the header must be path,<attribute>,..., got {','.join(header) or 'nothing'}")
        names = tuple(header[1:])
        samples = []
        for row in reader:
            number = reader.line_num
            if not row or not "".join(row).strip():
                continue
            if len(row) != len(header):
                raise DataError(f"{path}:{number}: {len(row)} cells for {len(header)} columns")
            try:
                values = [int(cell) for cell in row[1:]]
            except ValueError as exc:
                raise DataError(f"{path}:{number}: attribute cells must be 0 or 1, got {row[1:]}") from exc
            if any(v not in (0, 1) for v in values):
                raise DataError(f"{path}:{number}: attribute cells must be 0 or 1, got {values}")
            samples.append(MultiLabelSample(path.parent / row[0].strip(), np.asarray(values, dtype=np.float32),
                                            source=f"{path}:{number}"))
    return MultiLabelSet(names, tuple(samples))

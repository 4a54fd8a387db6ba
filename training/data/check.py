"""`labelserve data check`, and the same check at the start of `labelserve train`: read both splits as training will,
then open and decode every image as training will, so a run never starts on a dataset that fails later (a missing
file found in epoch 3 of a long run costs the epochs before it).

It reports what a user needs to trust the data: the format, images and labels per split, and the first problems with
the file and line that names them. Validation labels are matched to the training split's by name.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from labelserve.errors import DataError
from labelserve.image import open_rgb
from labelserve.preprocess import PreprocessSpec
from training.config import DataConfig
from training.data.formats import DatasetFormat, resolve_format
from training.data.readers import read_split
from training.data.samples import Box, MultiLabelSample, MultiLabelSet

__all__ = ["DataReport", "Problem", "SplitSummary", "check_dataset", "format_report"]

logger = logging.getLogger(__name__)

MAX_PROBLEMS = 20  # listed; all are counted
_SEPARATORS = (",", ";")  # in a list's label: a user who separated labels with the wrong character


@dataclass(frozen=True)
class Problem:
    """One thing that would make training fail or learn from the wrong data, and where it is named."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass(frozen=True)
class SplitSummary:
    """What one split holds."""

    name: str
    path: Path
    images: int
    unlabeled: int
    positives: tuple[int, ...]  # per label, in the report's label order


@dataclass
class DataReport:
    """The result of a check: the splits as training reads them (validation in the training split's label order),
    counts, warnings, and the problems (the first `MAX_PROBLEMS` of `problem_count`)."""

    format: DatasetFormat
    inferred: bool
    labels: tuple[str, ...]
    train: MultiLabelSet
    val: MultiLabelSet
    splits: tuple[SplitSummary, ...]
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def add(self, problem: Problem) -> None:
        """Count a problem; keep it if it is among the first."""
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)

    def raise_for_problems(self) -> None:
        """DataError (one line: the count and the first problem) unless the dataset is fine."""
        if not self.ok:
            more = f" (and {self.problem_count - 1} more)" if self.problem_count > 1 else ""
            raise DataError(f"{self.problems[0]}{more}; `labelserve data check` with the same --config and --set "
                            "lists every problem")


def _resolve(data: DataConfig) -> DatasetFormat:
    train = resolve_format(data.format, Path(data.train_annotations), "data.train_annotations")
    val = resolve_format(data.format, Path(data.val_annotations), "data.val_annotations")
    if train != val:
        raise DataError(f"data.train_annotations {data.train_annotations} reads as {train} but "
                        f"data.val_annotations {data.val_annotations} as {val}: both splits need one format")
    return train


def _align(val: MultiLabelSet, labels: tuple[str, ...]) -> MultiLabelSet:
    """`val` with its columns in `labels`' order (its labels missing from `labels` dropped: reported beforehand)."""
    column = {name: i for i, name in enumerate(labels)}
    moved = [(j, column[name]) for j, name in enumerate(val.labels) if name in column]
    samples = []
    for sample in val.samples:
        target = np.zeros(len(labels), dtype=np.float32)
        boxes: dict[int, list[Box]] = {}
        for old, new in moved:
            target[new] = sample.target[old]
            if old in sample.boxes:
                boxes[new] = sample.boxes[old]
        samples.append(MultiLabelSample(sample.path, target, boxes, sample.size, sample.source))
    return MultiLabelSet(labels, tuple(samples))


def _unknown_labels(report: DataReport, val: MultiLabelSet, train_path: str) -> None:
    known = set(report.labels)
    for j, name in enumerate(val.labels):
        if name in known:
            continue
        for sample in val.samples:
            if sample.target[j] > 0:
                report.add(Problem(sample.source, f"label {name!r} is not in the training split ({train_path}): "
                                                  "the model cannot learn it; label training images with it too"))


def _where_paths_live(fmt: DatasetFormat, annotations: Path, root: Path | None, key: str) -> str:
    if fmt == "coco":
        here = root if root is not None else annotations.resolve().parent.parent / "images"
        return f"file_name is relative to {key}, here {here}"
    if fmt == "voc":
        return "VOC images are <root>/JPEGImages/<id>.jpg"
    return f"paths are relative to the folder of {annotations.name}: {annotations.parent}"


def _image_problem(sample: MultiLabelSample, spec: PreprocessSpec) -> str | None:
    """Why the sample's image cannot be trained on, or None; decoded exactly as training decodes it."""
    if not sample.path.is_file():
        return f"{sample.path} does not exist"
    try:
        image = open_rgb(sample.path, spec)
        if min(image.size) < 1:
            return f"{sample.path} has no pixels"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return f"{sample.path} does not decode as an image ({' '.join(str(exc).split())})"
    return None


def _check_images(report: DataReport, fmt: DatasetFormat, data: DataConfig, annotations: Path,
                  split: MultiLabelSet, root: tuple[Path | None, str]) -> None:
    spec = data.preprocess_spec()
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="data-check") as pool:
        found = list(pool.map(lambda sample: _image_problem(sample, spec), split.samples))
    for sample, problem in zip(split.samples, found, strict=True):
        if problem is not None:
            hint = _where_paths_live(fmt, annotations, *root) if "does not exist" in problem else ""
            report.add(Problem(sample.source, f"{problem} ({hint})" if hint else problem))


def _summary(name: str, path: Path, split: MultiLabelSet, own: MultiLabelSet) -> SplitSummary:
    """Counts of `split` (in the training labels' order); images without labels as the file has them (`own`)."""
    if not split.samples:
        return SplitSummary(name, path, 0, 0, (0,) * len(split.labels))
    positives = tuple(int(v) for v in split.targets().sum(axis=0))
    return SplitSummary(name, path, len(split.samples), int((own.targets().sum(axis=1) == 0).sum()), positives)


def _warn(report: DataReport, fmt: DatasetFormat) -> None:
    train, val = report.splits
    for index, label in enumerate(report.labels):
        if train.positives[index] == 0:
            report.warnings.append(f"label {label!r} has no positive image in the training split: the model cannot "
                                   "learn it")
        elif val.positives[index] == 0:
            report.warnings.append(f"label {label!r} has no positive image in the validation split: its AP is not "
                                   "measured and its threshold stays 0.5")
        if fmt == "list" and any(sep in label for sep in _SEPARATORS):
            report.warnings.append(f"label {label!r} holds {' or '.join(_SEPARATORS)}: join an image's labels with |")
    shared = {s.path for s in report.train.samples} & {s.path for s in report.val.samples}
    if shared:
        report.warnings.append(f"{len(shared)} images are in both splits (e.g. {sorted(shared)[0]}): validation "
                               "scores will flatter the model")


def check_dataset(data: DataConfig) -> DataReport:
    """Read the dataset `data` describes and decode every image of it, as training will.

    Raises:
        DataError: an annotation file is missing, in another format or unreadable (problems found in the images and
            labels are collected in the report instead; `DataReport.raise_for_problems`).
    """
    started = time.perf_counter()
    fmt = _resolve(data)
    train_root = Path(data.image_root) if data.image_root else None
    val_root = Path(data.val_image_root) if data.val_image_root else train_root
    train_path, val_path = Path(data.train_annotations), Path(data.val_annotations)
    train = read_split(fmt, train_path, train_root, include_unlabeled=data.include_unlabeled)
    val_own = read_split(fmt, val_path, val_root)
    val = _align(val_own, train.labels)
    report = DataReport(fmt, data.format == "auto", train.labels, train, val,
                        (_summary("train", train_path, train, train), _summary("val", val_path, val, val_own)))
    for split, path in ((train, train_path), (val, val_path)):
        if not split.samples:
            report.add(Problem(str(path), "no images in this split"))
    if not train.labels:
        report.add(Problem(str(train_path), "no labels: every image of the training split is unlabelled"))
    elif val.samples and not any(report.splits[1].positives):
        report.add(Problem(str(val_path), "no validation image carries a label the training split has: nothing "
                                          "to measure the model on"))
    _unknown_labels(report, val_own, str(train_path))
    val_key = "data.val_image_root" if data.val_image_root else "data.image_root"
    for split, path, root in ((train, train_path, (train_root, "data.image_root")),
                              (val_own, val_path, (val_root, val_key))):
        _check_images(report, fmt, data, path, split, root)
    _warn(report, fmt)
    report.seconds = time.perf_counter() - started
    return report


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    """Left-aligned first and last columns, right-aligned numbers between."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) if i in (0, len(row) - 1) else cell.rjust(w)
                      for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip() for row in rows]


def format_report(report: DataReport) -> str:
    """The report as text: format, a row per split, a row per label, warnings, problems."""
    how = "inferred from the files" if report.inferred else "data.format"
    lines = [f"format: {report.format} ({how}); {len(report.labels)} labels; checked in {report.seconds:.1f} s", ""]
    lines += _table([("split", "images", "without labels", "annotations"),
                     *((s.name, str(s.images), str(s.unlabeled), str(s.path)) for s in report.splits)])
    counts = [(label, *(str(s.positives[i]) for s in report.splits), "") for i, label in enumerate(report.labels)]
    lines += ["", *_table([("label", "train", "val", ""), *counts])]
    if report.warnings:
        lines += ["", f"warnings ({len(report.warnings)}):", *(f"  {w}" for w in report.warnings)]
    if report.problem_count:
        shown = f"; the first {len(report.problems)}" if report.problem_count > len(report.problems) else ""
        lines += ["", f"problems ({report.problem_count}{shown}):", *(f"  {p}" for p in report.problems)]
    else:
        lines += ["", "no problems: every image exists and decodes, every validation label is a training label"]
    return "\n".join(lines) + "\n"

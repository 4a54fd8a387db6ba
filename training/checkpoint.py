"""Checkpoints: weights plus everything needed to rebuild, evaluate and export the model without the training run.

A checkpoint carries the model config (registry name and arguments), the label names, the preprocessing spec, the
task and the validation metrics, so `labelserve export` needs nothing but the file. Writes are atomic (temporary file
in the same folder, fsync, rename): a crash mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from labelserve.errors import ExportError
from labelserve.preprocess import PreprocessSpec
from training.models import MultiLabelModel, create_model

__all__ = ["Checkpoint", "load_checkpoint", "model_from_checkpoint", "save_checkpoint"]

FORMAT = "labelserve-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """The content of a checkpoint file."""

    model_state: dict[str, torch.Tensor]
    model_config: dict[str, Any]
    labels: list[str]
    preprocess: PreprocessSpec
    task: str
    epoch: int
    metrics: dict[str, float] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)
    training_state: dict[str, Any] = field(default_factory=dict)  # optimizer, scheduler, scaler: for resuming
    thresholds: list[float] | None = None  # per-label decision thresholds calibrated on validation data


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Write `checkpoint` to `path` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_state": checkpoint.model_state,
        "model_config": checkpoint.model_config,
        "labels": list(checkpoint.labels),
        "preprocess": checkpoint.preprocess.model_dump(mode="json"),
        "task": checkpoint.task,
        "epoch": checkpoint.epoch,
        "metrics": dict(checkpoint.metrics),
        "train_config": checkpoint.train_config,
        "training_state": checkpoint.training_state,
        "thresholds": checkpoint.thresholds,
    }
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint` (tensors are mapped to the CPU).

    Raises:
        ExportError: the file is missing or is not a labelserve checkpoint this version reads.
    """
    if not Path(path).is_file():
        raise ExportError(f"checkpoint {path} does not exist (`labelserve train` writes <output_dir>/best.pt)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, KeyError, EOFError) as exc:  # what torch.load raises for other files
        raise ExportError(f"{path} is not a labelserve checkpoint (torch cannot read it: "
                          f"{' '.join(str(exc).split())[:120]})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ExportError(f"{path} is not a labelserve checkpoint (pass the best.pt or last.pt that "
                          "`labelserve train` wrote)")
    if payload["format_version"] > FORMAT_VERSION:
        raise ExportError(f"{path} has checkpoint format {payload['format_version']}; this labelserve reads up to "
                         f"{FORMAT_VERSION}: upgrade labelserve")
    return Checkpoint(
        model_state=payload["model_state"],
        model_config=payload["model_config"],
        labels=list(payload["labels"]),
        preprocess=PreprocessSpec.model_validate(payload["preprocess"]),
        task=payload["task"],
        epoch=int(payload["epoch"]),
        metrics=dict(payload.get("metrics", {})),
        train_config=payload.get("train_config", {}),
        training_state=payload.get("training_state", {}),
        thresholds=payload.get("thresholds"),
    )


def model_from_checkpoint(checkpoint: Checkpoint) -> MultiLabelModel:
    """Rebuild the model (in eval mode) and load its weights; the backbone is not re-downloaded."""
    config = checkpoint.model_config
    model = create_model(
        head=config["head"],
        backbone=config["backbone"],
        num_classes=config["num_classes"],
        pretrained=False,
        feature_index=config.get("feature_index", -1),
        head_kwargs=config.get("head_kwargs", {}),
        backbone_kwargs=config.get("backbone_kwargs", {}),
    )
    model.load_state_dict(checkpoint.model_state)
    return model.eval()

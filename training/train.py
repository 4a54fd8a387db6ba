"""`run_training`: data -> model -> AdamW + OneCycle -> per-epoch evaluation -> atomic checkpoints and curves."""

from __future__ import annotations

import csv
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader

from training.checkpoint import Checkpoint, save_checkpoint
from training.config import TrainConfig
from training.data.dataset import MultiLabelDataset
from training.data.readers import read_split
from training.data.samples import MultiLabelSet
from training.data.transforms import eval_transform, train_transform
from training.loop import Precision, evaluate, train_one_epoch
from training.losses import create_loss
from training.models import LabelStatistics, MultiLabelModel, create_model
from training.plots import plot_curves

__all__ = ["TrainResult", "resolve_device", "run_training"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """Where the run's artefacts are and how the best epoch scored."""

    output_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    best_metrics: dict[str, float]
    history: list[dict[str, float]]


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present; anything else is passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for but CUDA is not available here; use device=auto or cpu")
    return device


def _seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _read_splits(config: TrainConfig) -> tuple[MultiLabelSet, MultiLabelSet]:
    data = config.data
    if not data.train_annotations or not data.val_annotations:
        raise ValueError("data.train_annotations and data.val_annotations must both be set")
    root = Path(data.image_root) if data.image_root else None
    train = read_split(data.format, Path(data.train_annotations), root, include_unlabeled=data.include_unlabeled)
    val = read_split(data.format, Path(data.val_annotations), root, labels=train.labels)
    if not train.samples or not val.samples:
        raise ValueError("train or val split has no images")
    return train, val


def _loaders(config: TrainConfig, train: MultiLabelSet, val: MultiLabelSet, device: torch.device,
             generator: torch.Generator) -> tuple[DataLoader, DataLoader]:
    data = config.data
    spec = data.preprocess_spec()
    common = {"num_workers": data.workers, "pin_memory": device.type == "cuda",
              "persistent_workers": data.workers > 0}
    train_loader = DataLoader(MultiLabelDataset(train, train_transform(spec, hflip=data.hflip)),
                              batch_size=data.batch_size, shuffle=True, drop_last=len(train.samples) > data.batch_size,
                              generator=generator, **common)
    val_loader = DataLoader(MultiLabelDataset(val, eval_transform(spec)), batch_size=data.eval_batch_size,
                            shuffle=False, **common)
    return train_loader, val_loader


def _build_model(config: TrainConfig, train_set: MultiLabelSet) -> MultiLabelModel:
    m = config.model
    return create_model(m.head, m.backbone, len(train_set.labels), pretrained=m.pretrained,
                        checkpoint_path=m.checkpoint_path, feature_index=m.feature_index, head_kwargs=m.head_kwargs,
                        backbone_kwargs=m.backbone_kwargs,
                        label_statistics=LabelStatistics.from_targets(train_set.targets()))


def _build_criterion(config: TrainConfig, model: MultiLabelModel) -> torch.nn.Module:
    """The configured loss; the AAM loss takes its scale from the cosine head so the two always agree."""
    kwargs = dict(config.loss.kwargs)
    if config.loss.name == "aam":
        scale = getattr(model.head, "logit_scale", None)
        if scale is None:
            raise ValueError("the aam loss needs a cosine head: model.head gcn, or mldecoder with head_kwargs.cosine")
        if kwargs.get("scale", scale) != scale:
            raise ValueError(f"loss.kwargs.scale {kwargs['scale']} disagrees with the head's scale {scale}; "
                             "set the scale on the head only")
        kwargs["scale"] = scale
    return create_loss(config.loss.name, **kwargs)


def run_training(config: TrainConfig, show_progress: bool = True) -> TrainResult:
    """Train `config` to completion, writing `config.yaml`, `last.pt`, `best.pt`, `metrics.csv`, `curves.png`."""
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
    generator = _seed_everything(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    train_set, val_set = _read_splits(config)
    train_loader, val_loader = _loaders(config, train_set, val_set, device, generator)
    model = _build_model(config, train_set).to(device)
    criterion = _build_criterion(config, model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.optim.lr, epochs=config.optim.epochs, steps_per_epoch=len(train_loader),
        pct_start=config.optim.pct_start,
    )
    precision = Precision.for_device(device, config.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.needs_scaler)
    logger.info("training %s/%s on %s: %d train, %d val images, %d labels", config.model.backbone,
                config.model.head, device, len(train_set.samples), len(val_set.samples), len(train_set.labels))

    history: list[dict[str, float]] = []
    best_map, best_metrics = -1.0, {}
    for epoch in range(1, config.optim.epochs + 1):
        started = time.perf_counter()
        train_loss = train_one_epoch(model, train_loader, criterion, optimizer, scheduler, device, precision, scaler,
                                     epoch, config.optim.grad_clip_norm, show_progress)
        result = evaluate(model, val_loader, criterion, device, precision, show_progress)
        row = {"epoch": epoch, "train_loss": train_loss, **result.metrics, "seconds": time.perf_counter() - started}
        history.append(row)
        logger.info("epoch %d/%d: train_loss %.4f val mAP %.4f CF1 %.4f OF1 %.4f (%.0fs)", epoch, config.optim.epochs,
                    train_loss, row["mAP"], row["CF1"], row["OF1"], row["seconds"])
        checkpoint = Checkpoint(
            model_state={k: v.detach().cpu() for k, v in model.state_dict().items()},
            model_config=model.config, labels=list(train_set.labels), preprocess=config.data.preprocess_spec(),
            task=config.task, epoch=epoch, metrics=result.metrics, train_config=config.to_dict(),
            training_state={"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
        )
        save_checkpoint(out / "last.pt", checkpoint)
        if row["mAP"] > best_map:
            best_map, best_metrics = row["mAP"], dict(result.metrics)
            save_checkpoint(out / "best.pt", checkpoint)
        _write_history(out / "metrics.csv", history)
    plot_curves(history, out / "curves.png")
    return TrainResult(out, out / "best.pt", out / "last.pt", best_metrics, history)


def _write_history(path: Path, history: list[dict[str, float]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)

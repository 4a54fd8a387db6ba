"""`run_training`: data -> model -> optimiser/schedule -> epochs with evaluation -> checkpoints, logs, thresholds.

The dataset is checked first (`training.data.check`: every image decodes, every label is known), and nothing is
written before the data and the model are ready, so a run that cannot start leaves no half-made output folder.
Artefacts in `output_dir`: `config.yaml` (resolved), `last.pt` (raw + EMA weights and optimiser state, for
`resume`), `best.pt` (the better of raw/EMA weights at the best epoch, with calibrated per-label thresholds),
`metrics.csv`, `curves.png` and `tensorboard/`. Under `torchrun` only rank 0 evaluates and writes.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import timm
import torch
import yaml
from torch.utils.data import DataLoader, DistributedSampler

from labelserve.errors import ConfigError
from labelserve.torch_device import resolve_torch_device
from training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from training.config import TrainConfig
from training.data.check import DataReport, check_dataset
from training.data.dataset import MultiLabelDataset
from training.data.samples import MultiLabelSet
from training.data.transforms import eval_transform, train_transform
from training.distributed import DistributedContext
from training.evaluation import EvalScores, summarize
from training.loop import Precision, StepTools, evaluate, train_one_epoch
from training.losses import create_loss
from training.metrics import calibrate_thresholds, threshold_metrics
from training.models import LabelStatistics, MultiLabelModel, create_model, list_heads
from training.optim import SAM, build_optimizer, build_scheduler, create_ema, ema_state, load_ema_state
from training.run_log import RunLog

__all__ = ["TrainResult", "run_training"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """Where the run's artefacts are and how the best epoch scored."""

    output_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    best_metrics: dict[str, float]
    history: list[dict[str, float]]
    best_scores: EvalScores | None = None  # the best epoch's validation scores, per image (None off rank 0)


def _seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _checked_data(config: TrainConfig) -> DataReport:
    """The dataset, checked before anything else happens; DataError on the first problem (all of them logged)."""
    report = check_dataset(config.data)
    for split in report.splits:
        logger.info("%s: %d images (%d without labels) from %s", split.name, split.images, split.unlabeled,
                    split.path)
    logger.info("data: %s, %d labels, every image checked in %.1f s", report.format, len(report.labels),
                report.seconds)
    for warning in report.warnings:
        logger.warning("%s", warning)
    for problem in report.problems:
        logger.error("%s", problem)
    report.raise_for_problems()
    return report


def _build_model(config: TrainConfig, train_set: MultiLabelSet) -> MultiLabelModel:
    m = config.model
    if m.head not in list_heads():
        raise ConfigError(f"model.head {m.head!r} is not a head; heads: {', '.join(list_heads())}")
    if not timm.is_model(m.backbone):
        raise ConfigError(f"model.backbone {m.backbone!r} is not a timm model name; e.g. resnet50, "
                          "tf_efficientnet_lite0 (configs/pretrained.yaml), test_resnet (timm.list_models() lists all)")
    try:
        model = create_model(m.head, m.backbone, len(train_set.labels), pretrained=m.pretrained,
                             pretrained_source=m.pretrained_source, checkpoint_path=m.checkpoint_path,
                             feature_index=m.feature_index, head_kwargs=m.head_kwargs,
                             backbone_kwargs=m.backbone_kwargs,
                             label_statistics=LabelStatistics.from_targets(train_set.targets()))
    except (TypeError, ValueError, FileNotFoundError, IndexError) as exc:  # a wrong key or value in `model`
        raise ConfigError(f"model ({m.head} on {m.backbone}): {' '.join(str(exc).split())}") from exc
    packaged = model.backbone.packaged_weights
    if packaged is not None and (tuple(config.data.mean), tuple(config.data.std)) != (packaged.mean, packaged.std):
        logger.warning("%s's pretrained weights expect mean %s and std %s, but data.mean is %s and data.std %s",
                       m.backbone, packaged.mean, packaged.std, config.data.mean, config.data.std)
    return model


def _build_criterion(config: TrainConfig, model: MultiLabelModel) -> torch.nn.Module:
    """The configured loss; the AAM loss takes its scale from the cosine head so the two always agree."""
    kwargs = dict(config.loss.kwargs)
    if config.loss.name == "aam":
        scale = getattr(model.head, "logit_scale", None)
        if scale is None:
            raise ConfigError("the aam loss needs a cosine head: model.head gcn, or mldecoder with "
                              "head_kwargs.cosine")
        if kwargs.get("scale", scale) != scale:
            raise ConfigError(f"loss.kwargs.scale {kwargs['scale']} disagrees with the head's scale {scale}; "
                              "set the scale on the head only")
        kwargs["scale"] = scale
    try:
        return create_loss(config.loss.name, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"loss {config.loss.name}: {' '.join(str(exc).split())}") from exc


def run_training(config: TrainConfig, show_progress: bool = True) -> TrainResult:
    """Train `config` to completion (or early stop) and return where the artefacts are.

    Raises:
        DataError: the dataset has a problem (`labelserve data check` lists them all); nothing was written.
        ConfigError: a model or loss setting is wrong; nothing was written.
    """
    report = _checked_data(config)
    config = config.model_copy(update={"data": config.data.model_copy(update={"format": report.format})})
    context = DistributedContext.from_environment()
    device = context.device(resolve_torch_device(config.device))
    context.start(device)
    try:
        return _Trainer(config, report, context, device, show_progress and context.is_main).fit()
    finally:
        context.stop()


class _Trainer:
    """The state of one run; methods stay small so the epoch loop reads as a list of steps."""

    def __init__(self, config: TrainConfig, data: DataReport, context: DistributedContext, device: torch.device,
                 show_progress: bool) -> None:
        self.config, self.context, self.device, self.show_progress = config, context, device, show_progress
        self.out = Path(config.output_dir)
        generator = _seed_everything(config.seed)
        if config.threads:
            torch.set_num_threads(config.threads)
        self.train_set, self.val_set = data.train, data.val
        self.model = _build_model(config, self.train_set).to(device)
        self.train_loader, self.val_loader = self._loaders(generator)
        self.tools = self._step_tools()
        self.ddp_model = context.wrap(self.model, device)
        self.start_epoch, self.best_score, self.stale_epochs = 1, -1.0, 0
        self.best: tuple[Checkpoint, EvalScores] | None = None
        history = self._resume() if config.resume else []
        if context.is_main:  # everything is ready: only now does the run leave anything on disk
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
        self.log = RunLog(self.out, config.tensorboard, history) if context.is_main else None
        logger.info("training %s/%s on %s (x%d): %d train, %d val images, %d labels", config.model.backbone,
                    config.model.head, device, context.world_size, len(self.train_set.samples),
                    len(self.val_set.samples), len(self.train_set.labels))

    def _loaders(self, generator: torch.Generator) -> tuple[DataLoader, DataLoader]:
        data = self.config.data
        spec = data.preprocess_spec()
        common = {"num_workers": data.workers, "pin_memory": self.device.type == "cuda",
                  "persistent_workers": data.workers > 0}
        train_data = MultiLabelDataset(self.train_set, train_transform(spec, data.hflip, data.randaugment, data.cutout),
                                       spec)
        drop_last = len(self.train_set.samples) > data.batch_size * self.context.world_size
        sampler = None
        if self.context.enabled:
            sampler = DistributedSampler(train_data, self.context.world_size, self.context.rank, shuffle=True,
                                         seed=self.config.seed, drop_last=drop_last)
        train_loader = DataLoader(train_data, batch_size=data.batch_size, shuffle=sampler is None, sampler=sampler,
                                  drop_last=drop_last, generator=generator, **common)
        val_loader = DataLoader(MultiLabelDataset(self.val_set, eval_transform(spec), spec),
                                batch_size=data.eval_batch_size, shuffle=False, **common)
        return train_loader, val_loader

    def _step_tools(self) -> StepTools:
        optim = self.config.optim
        precision = Precision.for_device(self.device, self.config.amp)
        if optim.sam_rho is not None and precision.needs_scaler:
            raise ValueError("SAM cannot run with fp16 loss scaling: use a bf16-capable GPU, or set amp=false")
        optimizer = build_optimizer(optim, self.model)
        return StepTools(
            criterion=_build_criterion(self.config, self.model),
            optimizer=optimizer,
            scheduler=build_scheduler(optim, optimizer, len(self.train_loader)),
            scaler=torch.amp.GradScaler(self.device.type, enabled=precision.needs_scaler),
            precision=precision,
            device=self.device,
            grad_clip_norm=optim.grad_clip_norm,
            sam=SAM(optimizer, optim.sam_rho) if optim.sam_rho is not None else None,
            ema=create_ema(self.model, optim.ema_decay) if optim.ema_decay is not None else None,
        )

    def _resume(self) -> list[dict[str, float]]:
        checkpoint = load_checkpoint(Path(str(self.config.resume)))
        self.model.load_state_dict(checkpoint.model_state)
        state = checkpoint.training_state
        self.tools.optimizer.load_state_dict(state["optimizer"])
        self.tools.scheduler.load_state_dict(state["scheduler"])
        self.tools.scaler.load_state_dict(state["scaler"])
        if self.tools.ema is not None and state.get("ema") is not None:
            load_ema_state(self.tools.ema, state["ema"])
        self.start_epoch = checkpoint.epoch + 1
        self.best_score = float(state.get("best_score", -1.0))
        self.stale_epochs = int(state.get("stale_epochs", 0))
        logger.info("resumed from %s at epoch %d", self.config.resume, checkpoint.epoch)
        return list(state.get("history", []))

    def fit(self) -> TrainResult:
        for epoch in range(self.start_epoch, self.config.optim.epochs + 1):
            started = time.perf_counter()
            if isinstance(self.train_loader.sampler, DistributedSampler):
                self.train_loader.sampler.set_epoch(epoch)
            train_loss, steps = train_one_epoch(self.ddp_model, self.train_loader, self.tools, epoch,
                                                self.show_progress)
            stop = self._end_of_epoch(epoch, train_loss, steps, started) if self.context.is_main else False
            stop = self.context.broadcast_flag(stop, self.device)
            self.context.barrier()
            if stop:
                logger.info("early stop after epoch %d: no better mAP for %d epochs", epoch, self.stale_epochs)
                break
        if self.context.is_main:
            self._finish()
        self.context.barrier()
        history = self.log.history if self.log else []
        best_metrics = dict(self.best[0].metrics) if self.best else {}
        return TrainResult(self.out, self.out / "best.pt", self.out / "last.pt", best_metrics, history,
                           self.best[1] if self.best else None)

    def _score(self, model: torch.nn.Module) -> tuple[EvalScores, dict[str, float]]:
        keep_attention = any(sample.boxes for sample in self.val_set.samples)
        scores = evaluate(model, self.val_loader, self.tools.criterion, self.device, self.tools.precision,
                          keep_attention, self.show_progress)
        return scores, summarize(scores, self.config.task, self.val_set)

    def _end_of_epoch(self, epoch: int, train_loss: float, steps: int, started: float) -> bool:
        """Evaluate raw (and EMA) weights, log, checkpoint; return whether to stop early."""
        scores, metrics = self._score(self.model)
        row = {"epoch": epoch, "train_loss": train_loss, "steps": steps, **metrics}
        chosen, chosen_scores, chosen_metrics = self.model.state_dict(), scores, metrics
        if self.tools.ema is not None:
            ema_scores, ema_metrics = self._score(self.tools.ema.module)
            row.update({f"ema_{k}": v for k, v in ema_metrics.items()})
            if ema_metrics["mAP"] > metrics["mAP"]:
                chosen, chosen_scores = self.tools.ema.module.state_dict(), ema_scores
                chosen_metrics = {**ema_metrics, "ema": 1.0}
        row["seconds"] = time.perf_counter() - started
        assert self.log is not None  # only rank 0 gets here
        self.log.add(row)
        logger.info("epoch %d/%d: train_loss %.4f val mAP %.4f CF1 %.4f OF1 %.4f%s (%.0fs)", epoch,
                    self.config.optim.epochs, train_loss, metrics["mAP"], metrics["CF1"], metrics["OF1"],
                    f" EMA mAP {row['ema_mAP']:.4f}" if "ema_mAP" in row else "", row["seconds"])
        improved = chosen_metrics["mAP"] > self.best_score
        self.stale_epochs = 0 if improved else self.stale_epochs + 1
        if improved:
            self.best_score = chosen_metrics["mAP"]
            self.best = (self._checkpoint(epoch, chosen, chosen_metrics), chosen_scores)
            save_checkpoint(self.out / "best.pt", self.best[0])
        save_checkpoint(self.out / "last.pt", self._last_checkpoint(epoch, metrics))
        patience = self.config.optim.early_stop_patience
        return patience is not None and self.stale_epochs > patience

    def _checkpoint(self, epoch: int, state: dict[str, torch.Tensor], metrics: dict[str, float],
                    training_state: dict | None = None) -> Checkpoint:
        return Checkpoint(
            model_state={k: v.detach().cpu().clone() for k, v in state.items()}, model_config=self.model.config,
            labels=list(self.train_set.labels), preprocess=self.config.data.preprocess_spec(), task=self.config.task,
            epoch=epoch, metrics=metrics, train_config=self.config.to_dict(), training_state=training_state or {},
        )

    def _last_checkpoint(self, epoch: int, metrics: dict[str, float]) -> Checkpoint:
        tools = self.tools
        training_state = {
            "optimizer": tools.optimizer.state_dict(), "scheduler": tools.scheduler.state_dict(),
            "scaler": tools.scaler.state_dict(), "ema": ema_state(tools.ema) if tools.ema else None,
            "history": self.log.history if self.log else [], "best_score": self.best_score,
            "stale_epochs": self.stale_epochs,
        }
        return self._checkpoint(epoch, self.model.state_dict(), metrics, training_state)

    def _finish(self) -> None:
        """Calibrate per-label thresholds on the best epoch's validation scores and store them in best.pt."""
        if self.log is not None:
            self.log.close()
        if self.best is None or not self.config.calibrate:
            return
        checkpoint, scores = self.best
        thresholds = calibrate_thresholds(scores.probs, scores.targets)
        calibrated = threshold_metrics(scores.probs, scores.targets, thresholds)
        checkpoint.thresholds = [float(t) for t in thresholds]
        checkpoint.metrics.update({f"{k}_calibrated": v for k, v in calibrated.items() if k in ("CF1", "OF1")})
        save_checkpoint(self.out / "best.pt", checkpoint)
        logger.info("calibrated per-label thresholds on validation: CF1 %.4f -> %.4f, OF1 %.4f -> %.4f",
                    checkpoint.metrics["CF1"], calibrated["CF1"], checkpoint.metrics["OF1"], calibrated["OF1"])

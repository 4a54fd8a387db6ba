"""The built-in demo model: synthetic data -> training -> export, each step cached so it runs once.

`make serve` calls this on a fresh clone, so the whole recipe must finish in a few minutes on 2 CPU cores and still
reach mAP >= 0.90 on the synthetic validation split (checked by tests/e2e/test_demo.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from export.repository import export_bundle
from labelserve.bundle import Bundle, BundleError, list_versions, load_bundle
from training.config import load_config
from training.data.synthetic import generate_objects_dataset
from training.train import run_training

__all__ = ["DEMO_CONFIG", "DEMO_NAME", "DemoData", "build_demo_model"]

logger = logging.getLogger(__name__)

DEMO_NAME = "demo"
DEMO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"


@dataclass(frozen=True)
class DemoData:
    """Size of the synthetic dataset the demo trains on."""

    num_train: int = 4000
    num_val: int = 600
    image_size: int = 128
    seed: int = 0


def _existing(repository: Path) -> Bundle | None:
    for version in reversed(list_versions(repository / DEMO_NAME)):
        try:
            return load_bundle(repository / DEMO_NAME / str(version))
        except BundleError as exc:
            logger.warning("ignoring broken demo version %d: %s", version, exc)
    return None


def build_demo_model(
    repository: Path,
    workdir: Path,
    force: bool = False,
    data: DemoData = DemoData(),
    config_path: Path = DEMO_CONFIG,
    overrides: list[str] | None = None,
    show_progress: bool = True,
) -> Bundle:
    """Return the newest demo bundle in `repository`, building it first if there is none (or `force`).

    Args:
        repository: model repository root; the bundle goes to `<repository>/demo/<version>/`.
        workdir: where the synthetic dataset and the training run are kept between calls.
        force: build a new version even if one exists.
        data: synthetic dataset size.
        config_path: training config (data paths and output_dir are set here).
        overrides: extra `key=value` config overrides (tests shorten the recipe with these).
        show_progress: progress bars during training.
    """
    existing = None if force else _existing(repository)
    if existing is not None:
        logger.info("demo model already built: %s", existing.path)
        return existing
    data_dir = workdir / f"data-{data.image_size}px-{data.num_train}-{data.num_val}-seed{data.seed}"
    train_file = data_dir / "annotations" / "instances_train.json"
    val_file = data_dir / "annotations" / "instances_val.json"
    if not (train_file.is_file() and val_file.is_file()):
        logger.info("rendering %d + %d synthetic scenes into %s", data.num_train, data.num_val, data_dir)
        generate_objects_dataset(data_dir, num_train=data.num_train, num_val=data.num_val,
                                 image_size=data.image_size, seed=data.seed, workers=2)
    config = load_config(config_path, [
        f"data.train_annotations={train_file}", f"data.val_annotations={val_file}",
        f"output_dir={workdir / 'run'}", *(overrides or []),
    ])
    result = run_training(config, show_progress=show_progress)
    bundle, _ = export_bundle(result.best_checkpoint, repository, DEMO_NAME,
                              parity_images=[data_dir / "images" / "val"])
    return bundle

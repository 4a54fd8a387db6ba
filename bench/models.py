"""The two models the serving benchmarks measure, so no default is tuned on one workload.

  demo            the built-in demo model (`labelserve demo`): a tiny ResNet at 128 px, ~600 images/s on 2 cores.
                  JPEG decode, HTTP and Python dominate: the decode-bound regime.
  resnet18-q2l    Query2Label on timm `resnet18` at 224 px with 80 labels (COCO's label count), ~50 images/s on
                  2 cores: the engine dominates, as with real models.

The engine-bound model has random weights (the figure is speed, not accuracy) but is built and exported by the
project's own code: `create_model`, a real checkpoint, `export_bundle` with its parity check on photo-like JPEGs.
Both are cached, so a benchmark pays for them once.

    python -m bench.models --repository .cache/bench-models
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from bench.images import photo_payloads
from labelserve.bundle import Bundle, list_versions, load_bundle
from labelserve.preprocess import PreprocessSpec

__all__ = ["DEFAULT_REPOSITORY", "ENGINE_BOUND_MODEL", "build_engine_bound_model", "ensure_model"]

logger = logging.getLogger(__name__)

ENGINE_BOUND_MODEL = "resnet18-q2l"
ENGINE_BOUND_LABELS = 80
ENGINE_BOUND_SIZE = 224
DEFAULT_REPOSITORY = Path(".cache/bench-models")


def build_engine_bound_model(repository: Path, seed: int = 0, torch_program: bool = False) -> Bundle:
    """Query2Label on resnet18 (stride-32 features, 7x7 at 224 px; hidden 256 with an input projection, one encoder
    and two decoder layers), random weights, exported into `<repository>/resnet18-q2l/<version>/` unless present;
    `torch_program` ships the torch.export program too (the torch engine, e.g. on a GPU)."""
    versions = list_versions(repository / ENGINE_BOUND_MODEL)
    if versions:
        return load_bundle(repository / ENGINE_BOUND_MODEL / str(versions[-1]))
    import torch

    from export.repository import export_bundle
    from training.checkpoint import Checkpoint, save_checkpoint
    from training.models import create_model

    torch.manual_seed(seed)
    model = create_model("query2label", "resnet18", ENGINE_BOUND_LABELS,
                         head_kwargs={"hidden_dim": 256, "keep_input_proj": True, "num_heads": 8})
    spec = PreprocessSpec(height=ENGINE_BOUND_SIZE, width=ENGINE_BOUND_SIZE, jpeg_dct_scaling=True)
    parameters = sum(p.numel() for p in model.parameters())
    logger.info("%s: %.1f M parameters, %d px, %d labels", ENGINE_BOUND_MODEL, parameters / 1e6,
                ENGINE_BOUND_SIZE, ENGINE_BOUND_LABELS)
    with tempfile.TemporaryDirectory(prefix="labelserve-bench-model-") as tmp:
        checkpoint_path = Path(tmp) / "random.pt"
        save_checkpoint(checkpoint_path, Checkpoint(
            model_state=model.state_dict(), model_config=model.config,
            labels=[f"label_{i:02d}" for i in range(ENGINE_BOUND_LABELS)], preprocess=spec, task="objects", epoch=0,
        ))
        photos = Path(tmp) / "photos"
        photos.mkdir()
        for index, payload in enumerate(photo_payloads(8)):
            (photos / f"photo{index}.jpg").write_bytes(payload)
        # Random weights give near-flat attention maps whose relevance readout normalises tiny differences: the
        # exported graph was measured 1.04e-4 off PyTorch there (logits 1e-6). The figure is speed, so the parity
        # check runs at 1e-3 of each output's scale rather than export's default 1e-4.
        bundle, report = export_bundle(checkpoint_path, repository, ENGINE_BOUND_MODEL, max_batch=32,
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
    for name in ("demo", ENGINE_BOUND_MODEL):
        ensure_model(args.repository, name)
        print(f"{name}: {args.repository / name}")


if __name__ == "__main__":
    main()

"""The bundles a GPU session measures, each with the torch.export program its GPU engine runs, made by the versions
that will read them.

A torch program is read back by the torch that wrote it (this project pins torch 2.14; the device image has 2.11), and
an ONNX file by an onnxruntime that knows its IR version, so a bundle is kept only where its producer's torch, onnx
and onnxruntime are the ones installed here; otherwise it is built again here, on the device too (seconds). Built
from what travels, in the order the session measures them:

  resnet18-q2l  bench/models.py's random-weight Query2Label-ResNet-18, from its seed: 108 MB with both engines, too
                big for the device's 64 MiB, so the device builds it (about 30 s on 2 CPU cores)
  demo          the demo model's checkpoint (`labelserve demo`'s recipe), which `make gpu-prep` puts in
                <root>/sources/demo.pt next to the bundle it builds from it

    python -m bench.gpu_bundles --root .cache/gpu-session --models resnet18-q2l demo
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from bench.images import photo_payloads
from bench.models import ENGINE_BOUND_MODEL, build_engine_bound_model
from labelserve.bundle import Bundle, list_versions, load_bundle

__all__ = ["MODELS", "QUIET_LOGGERS", "SESSION_ROOT", "SessionModel", "ensure_bundles", "stale_reason"]

logger = logging.getLogger(__name__)

SESSION_ROOT = Path(".cache/gpu-session")  # <root>/models: the model repository; <root>/sources: what builds them
_PRODUCERS = ("torch", "onnx", "onnxruntime")
QUIET_LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx", "torch._export", "torch.export")  # a line per graph pass


@dataclass(frozen=True)
class SessionModel:
    """A model the session measures: how to build its bundle from <root>/sources, and whether the bundle itself
    travels to the device (else the device builds it)."""

    name: str
    build: Callable[[Path, Path], Bundle]
    travels: bool


def _build_demo(repository: Path, sources: Path) -> Bundle:
    from export.repository import export_bundle

    checkpoint = sources / "demo.pt"
    if not checkpoint.is_file():
        raise FileNotFoundError(f"no demo checkpoint at {checkpoint}: run `make gpu-prep` (it puts one there)")
    with tempfile.TemporaryDirectory(prefix="labelserve-gpu-photos-") as photos:
        for index, payload in enumerate(photo_payloads(8)):
            (Path(photos) / f"photo{index}.jpg").write_bytes(payload)
        bundle, _ = export_bundle(checkpoint, repository, "demo", max_batch=32, parity_images=[Path(photos)],
                                  torch_program=True)
    return bundle


def _build_engine_bound(repository: Path, sources: Path) -> Bundle:
    return build_engine_bound_model(repository, torch_program=True)


# Most important first. HOOK: the light 80-label bench model goes here once bench/models.py has one, e.g.
# SessionModel(LIGHT_MODEL, lambda repository, _: build_light_model(repository, torch_program=True), travels=...):
# the session (bench/gpu_session.sh) measures every model listed, in this order.
MODELS = (
    SessionModel(ENGINE_BOUND_MODEL, _build_engine_bound, travels=False),
    SessionModel("demo", _build_demo, travels=True),
)


def stale_reason(bundle: Bundle) -> str | None:
    """Why `bundle` cannot serve the session here (no torch program, or written by other versions), or None."""
    if bundle.manifest.engine("torch") is None:
        return "it ships no torch program"
    for package in _PRODUCERS:
        wrote = bundle.manifest.producer.get(package)
        try:
            here = metadata.version(package)
        except metadata.PackageNotFoundError:
            here = None
        if wrote != here:
            return f"it was written by {package} {wrote}, this machine has {here}"
    return None


def ensure_bundles(root: Path, names: list[str]) -> dict[str, str]:
    """Make each named model's newest bundle under <root>/models one that serves here; what was done, per model."""
    known = {model.name: model for model in MODELS}
    if unknown := [n for n in names if n not in known]:
        raise ValueError(f"unknown session models {unknown}: use some of {list(known)}")
    repository, done = root / "models", {}
    for name in names:
        versions = list_versions(repository / name)
        bundle = load_bundle(repository / name / str(versions[-1])) if versions else None
        reason = stale_reason(bundle) if bundle else "there is none"
        if reason is None:
            done[name] = f"kept {bundle.path}"
            continue
        logger.info("building %s: %s", name, reason)
        bundle = known[name].build(repository, root / "sources")
        if still := stale_reason(bundle):
            raise RuntimeError(f"{bundle.path} cannot serve here ({still}): remove it and run again")
        done[name] = f"built {bundle.path} ({reason})"
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=SESSION_ROOT)
    parser.add_argument("--models", nargs="+", default=[model.name for model in MODELS])
    parser.add_argument("--list", action="store_true", help="print the session's models, most important first")
    args = parser.parse_args()
    if args.list:
        print(" ".join(model.name for model in MODELS))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name, what in ensure_bundles(args.root, args.models).items():
        print(f"{name}: {what}")


if __name__ == "__main__":
    main()

"""Checkpoint -> verified ONNX -> a new version in the model repository, in one call."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from export.baseline import compute_baseline
from export.onnx import DEFAULT_OPSET, INPUT_NAME, export_onnx
from export.parity import ParityReport, check_onnx_parity
from export.tensorrt_plan import PLAN_FILENAME, PLAN_TOLERANCE, build_plan, check_plan_parity, tensorrt_missing
from export.torch_program import TORCH_PROGRAM_FILENAME, export_torch_program
from export.wrapper import ExportWrapper
from labelserve.bundle import Bundle, EngineSpec, Manifest, OutputsSpec, TensorSpec, next_version, write_bundle
from labelserve.errors import DataError, ExportError
from labelserve.label_stats import Baseline
from labelserve.preprocess import PreprocessSpec, preprocess
from training.checkpoint import load_checkpoint, model_from_checkpoint
from training.data.dataset import load_rgb
from training.data.formats import resolve_format
from training.data.readers import read_split

__all__ = ["checkpoint_val_images", "export_bundle", "load_parity_images"]

logger = logging.getLogger(__name__)

ONNX_FILENAME = "model.onnx"
_PRODUCER_PACKAGES = ("labelserve", "torch", "timm", "onnx", "onnxruntime", "tensorrt")


def load_parity_images(paths: Sequence[Path], spec: PreprocessSpec, limit: int = 8) -> np.ndarray:
    """Decode and preprocess up to `limit` image files (folders are searched for .jpg/.jpeg/.png) to `[N, 3, H, W]`.

    Raises:
        ExportError: a path does not exist, or there is no image among them.
    """
    files: list[Path] = []
    for path in paths:
        if not path.exists():
            raise ExportError(f"parity image path {path} does not exist; --parity-images takes image files or "
                              "folders")
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"}))
        else:
            files.append(path)
    files = files[:limit]
    if not files:
        raise ExportError(f"no parity images found in {[str(p) for p in paths]}: --parity-images takes image files "
                          "or folders holding .jpg, .jpeg or .png files")
    return np.stack([preprocess(load_rgb(str(f), spec), spec) for f in files])


def checkpoint_val_images(train_config: dict, limit: int = 8) -> list[Path]:
    """Up to `limit` images of the validation split the checkpoint was trained with, read with its own format
    (COCO, VOC, list or attributes), that exist here.

    Raises:
        ExportError: there are none, saying why and naming `--parity-images`.
    """
    data = train_config.get("data", {})
    val = data.get("val_annotations")
    fix = "pass --parity-images <image files or folders>, a few images like those the model will serve"
    if not val:
        raise ExportError(f"no parity images: the checkpoint names no validation split; {fix}")
    root_name = data.get("val_image_root") or data.get("image_root")
    root = Path(root_name) if root_name else None
    try:
        fmt = resolve_format(data.get("format", "coco"), Path(val), "data.val_annotations")
        split = read_split(fmt, Path(val), root)
    except DataError as exc:
        raise ExportError(f"no parity images: the checkpoint's validation split cannot be read here ({exc}); "
                          f"{fix}") from exc
    files = [sample.path for sample in split.samples if sample.path.is_file()][:limit]
    if not files:
        raise ExportError(f"no parity images: none of the {len(split.samples)} images of the checkpoint's validation "
                          f"split {val} exists here; {fix}")
    return files


def _baseline(onnx_path: Path, spec: PreprocessSpec, thresholds: tuple[float, ...], train_config: dict,
              limit: int) -> Baseline | None:
    """The baseline on up to `limit` validation images, or None (said in the log) where there are none to read."""
    if limit <= 0:
        return None
    try:
        images = checkpoint_val_images(train_config, limit=limit)
    except ExportError as exc:
        logger.warning("no baseline in this bundle (label monitoring will say so): %s", exc)
        return None
    source = f"{len(images)} images of {train_config.get('data', {}).get('val_annotations')}"
    return compute_baseline(onnx_path, INPUT_NAME, "logits", spec, thresholds, images, source)


def _producer_versions() -> dict[str, str]:
    versions = {}
    for package in _PRODUCER_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def export_bundle(
    checkpoint_path: Path,
    repository: Path,
    name: str,
    version: int | None = None,
    max_batch: int = 32,
    parity_images: Sequence[Path] | None = None,
    tolerance: float = 1e-4,
    with_attention: bool = True,
    opset: int = DEFAULT_OPSET,
    torch_program: bool = False,
    tensorrt: bool = False,
    tensorrt_precision: Literal["fp32", "fp16"] = "fp32",
    baseline_images: int = 2000,
) -> tuple[Bundle, ParityReport]:
    """Export a checkpoint into `<repository>/<name>/<version>/` after the parity check passes.

    Args:
        checkpoint_path: a `labelserve train` checkpoint.
        repository: model repository root.
        name: model name in the repository.
        version: explicit version; default is one above the newest present.
        max_batch: largest batch the service may send (recorded in the manifest).
        parity_images: image files or folders for the parity check; default: images of the checkpoint's validation
            split (`checkpoint_val_images`).
        tolerance: largest acceptable difference between PyTorch and onnxruntime, per unit of an output's
            scale (`export.parity.ParityReport`).
        with_attention: export the per-label attention maps as a second output.
        opset: ONNX opset.
        torch_program: also ship a `torch.export` program for the service's optional torch engine.
        tensorrt: also build a TensorRT plan for this machine's GPU, checked against onnxruntime.
        tensorrt_precision: the plan's precision.
        baseline_images: up to this many images of the checkpoint's validation split are answered by the exported
            graph to write the bundle's baseline (what the service's label monitoring compares with); 0, or a split
            that cannot be read here, writes none (the bundle still serves; monitoring says "no baseline").

    Raises:
        ExportError: `tensorrt` is asked for on a machine without TensorRT or a GPU (before any work is done); the
            checkpoint cannot be read; no parity images; the parity check fails (`ParityError`).
    """
    if tensorrt and (problem := tensorrt_missing()):
        raise ExportError(problem)
    checkpoint = load_checkpoint(checkpoint_path)
    model = model_from_checkpoint(checkpoint)
    wrapper = ExportWrapper(model, with_attention=with_attention)
    spec = checkpoint.preprocess
    sources = list(parity_images) if parity_images else checkpoint_val_images(checkpoint.train_config)
    images = load_parity_images(sources, spec)
    version = version or next_version(repository / name)
    with tempfile.TemporaryDirectory(prefix="labelserve-export-") as tmp:
        onnx_path = export_onnx(wrapper, spec, Path(tmp) / ONNX_FILENAME, opset=opset)
        report = check_onnx_parity(wrapper, onnx_path, images, tolerance=tolerance)
        logger.info("parity on %d images, batch sizes %s: max abs diff %s", report.num_images, report.batch_sizes,
                    report.max_abs_diff)
        with torch.no_grad():
            sample_out = wrapper(torch.from_numpy(images[:1]))
        files = {ONNX_FILENAME: onnx_path}
        engines = [EngineSpec(format="onnx", file=ONNX_FILENAME, precision="fp32", max_batch=max_batch, opset=opset)]
        extra_metrics = {}
        if torch_program:
            program_path = Path(tmp) / TORCH_PROGRAM_FILENAME
            extra_metrics["parity_max_abs_diff_torch_program"] = export_torch_program(
                wrapper, spec, program_path, max_batch, images, tolerance)
            files[TORCH_PROGRAM_FILENAME] = program_path
            engines.append(EngineSpec(format="torch", file=TORCH_PROGRAM_FILENAME, precision="fp32",
                                      max_batch=max_batch))
        if tensorrt:
            plan = build_plan(onnx_path, Path(tmp) / PLAN_FILENAME, INPUT_NAME, spec.shape, max_batch,
                              precision=tensorrt_precision)
            plan_diff = check_plan_parity(plan.path, onnx_path, INPUT_NAME, wrapper.output_names(), images,
                                          max_batch, PLAN_TOLERANCE[tensorrt_precision])
            logger.info("TensorRT plan parity against onnxruntime: max abs diff %s", plan_diff)
            extra_metrics |= {f"parity_max_abs_diff_tensorrt_{k}": v for k, v in plan_diff.items()}
            files[PLAN_FILENAME] = plan.path
            engines.append(EngineSpec(format="tensorrt", file=PLAN_FILENAME, precision=tensorrt_precision,
                                      max_batch=max_batch, device=plan.device, runtime_version=plan.runtime_version))
        num_labels = len(checkpoint.labels)
        thresholds = tuple(checkpoint.thresholds or [0.5] * num_labels)
        baseline = _baseline(onnx_path, spec, thresholds, checkpoint.train_config, baseline_images)
        attention = None
        if with_attention:
            _, _, height, width = sample_out[1].shape
            attention = TensorSpec(name="attention", shape=("batch", num_labels, height, width))
        manifest = Manifest(
            name=name,
            version=version,
            task=checkpoint.task,
            head=checkpoint.model_config["head"],
            backbone=checkpoint.model_config["backbone"],
            labels=tuple(checkpoint.labels),
            thresholds=thresholds,
            input_name=INPUT_NAME,
            input=spec,
            outputs=OutputsSpec(logits=TensorSpec(name="logits", shape=("batch", num_labels)), attention=attention),
            engines=tuple(engines),
            metrics={k: float(v) for k, v in checkpoint.metrics.items() }
            | {f"parity_max_abs_diff_{k}": v for k, v in report.max_abs_diff.items()} | extra_metrics,
            baseline=baseline,
            producer=_producer_versions(),
        )
        bundle = write_bundle(repository, manifest, files)
    logger.info("wrote %s", bundle.path)
    return bundle, report

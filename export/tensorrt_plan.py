"""Verified ONNX -> TensorRT plan (`model.plan`) with a dynamic batch axis, checked against onnxruntime.

The plan gets one optimisation profile covering batches 1..max_batch, tuned for max_batch (the batcher fills
batches under load, which is where throughput matters). `fp32` turns TF32 off so it is what it says; `fp16` uses
TensorRT 10's FP16 builder flag (TensorRT 11 dropped such flags: it builds only strongly typed networks, and this
exporter then refuses fp16 rather than build a silently different precision). The plan is run on the parity images
with `labelserve.plan_runner.PlanRunner`, the runner the service's engine serves with, and compared with onnxruntime
on the CPU; a plan outside tolerance is refused, like an ONNX file that does not match PyTorch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from export.parity import ParityError, largest_differences
from labelserve.engine_errors import EngineLoadError
from labelserve.plan_runner import PlanRunner, import_tensorrt

__all__ = ["PLAN_FILENAME", "PLAN_TOLERANCE", "BuiltPlan", "build_plan", "check_plan_parity", "tensorrt_missing"]

logger = logging.getLogger(__name__)

PLAN_FILENAME = "model.plan"
PLAN_TOLERANCE = {"fp32": 1e-3, "fp16": 5e-2}  # on logits and attention; kernels fuse and reorder sums


@dataclass(frozen=True)
class BuiltPlan:
    """A plan on disk and what it is tied to."""

    path: Path
    device: str  # GPU architecture, e.g. sm_90
    runtime_version: str  # TensorRT version
    precision: Literal["fp32", "fp16"]


def tensorrt_missing() -> str | None:
    """Why this machine cannot build plans (TensorRT, cuda-bindings or a GPU missing), or None if it can."""
    try:
        _, cuda_runtime = import_tensorrt()
    except EngineLoadError as exc:
        return f"TensorRT plans cannot be built here: {exc}"
    try:
        cuda_runtime.device_arch()
    except cuda_runtime.CudaError as exc:
        return f"TensorRT plans are built on the GPU they will run on, and CUDA reports none: {exc}"
    return None


def _parse(trt: Any, network: Any, onnx_path: Path, logger_: Any) -> Any:
    parser = trt.OnnxParser(network, logger_)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT's ONNX parser refused {onnx_path}: {errors}")
    return parser


def build_plan(onnx_path: Path, plan_path: Path, input_name: str, image_shape: tuple[int, int, int], max_batch: int,
               precision: Literal["fp32", "fp16"] = "fp32", workspace_gib: float = 4.0) -> BuiltPlan:
    """Compile the ONNX graph for this GPU and write the serialized plan.

    Raises:
        RuntimeError: no TensorRT/GPU here, the parser refuses the graph, the precision is not available, or the
            build fails.
    """
    if problem := tensorrt_missing():
        raise RuntimeError(problem)
    import tensorrt as trt

    from labelserve import cuda_runtime

    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    network = builder.create_network(0)  # explicit batch is the only mode since TensorRT 10
    parser = _parse(trt, network, onnx_path, trt_logger)  # the network refers to the parser's weights: keep it
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if precision == "fp32":
        if hasattr(trt.BuilderFlag, "TF32"):
            config.clear_flag(trt.BuilderFlag.TF32)
    elif hasattr(trt.BuilderFlag, "FP16"):
        config.set_flag(trt.BuilderFlag.FP16)
    else:
        raise RuntimeError(f"TensorRT {trt.__version__} builds only strongly typed networks, so an fp16 plan needs an "
                           f"fp16 ONNX graph; export fp32 or use TensorRT 10")
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, (1, *image_shape), (max_batch, *image_shape), (max_batch, *image_shape))
    config.add_optimization_profile(profile)
    logger.info("building a TensorRT %s %s plan for batches 1..%d (takes a minute or more)", trt.__version__,
                precision, max_batch)
    serialized = builder.build_serialized_network(network, config)
    del parser
    if serialized is None:
        raise RuntimeError(f"TensorRT could not build a plan from {onnx_path} (see the TensorRT messages above)")
    plan_path.write_bytes(bytes(serialized))
    built = BuiltPlan(path=plan_path, device=cuda_runtime.device_arch(), runtime_version=trt.__version__,
                      precision=precision)
    logger.info("wrote %s (%.1f MB) for %s", plan_path, plan_path.stat().st_size / 1e6, built.device)
    return built


def check_plan_parity(plan_path: Path, onnx_path: Path, input_name: str, output_names: list[str],
                      images: np.ndarray, max_batch: int, tolerance: float) -> dict[str, float]:
    """Largest |plan - onnxruntime| per output on `images`, at batch 1 and at the full batch.

    Raises:
        ParityError: some output differs by more than `tolerance`.
    """
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    runner = PlanRunner(plan_path, input_name, max_batch)
    runner.open()
    try:
        worst = largest_differences(
            lambda chunk: session.run(output_names, {input_name: chunk}),
            lambda chunk: list(runner.run(chunk, output_names).values()),  # in output_names order
            output_names, images, sorted({1, min(len(images), runner.max_batch)}))
    finally:
        runner.close()
    if any(diff > tolerance for diff in worst.values()):
        raise ParityError(f"the TensorRT plan differs from onnxruntime beyond {tolerance}: {worst}")
    return worst

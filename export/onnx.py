"""PyTorch model -> ONNX with a dynamic batch axis, through the torch.export-based exporter."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import onnx
import torch

from export.wrapper import ExportWrapper
from labelserve.preprocess import PreprocessSpec

__all__ = ["DEFAULT_OPSET", "INPUT_NAME", "export_onnx"]

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 18
INPUT_NAME = "images"
_MAX_TRACE_BATCH = 4096  # upper bound for the symbolic batch dimension; any real batch is far below it


def export_onnx(wrapper: ExportWrapper, spec: PreprocessSpec, path: Path, opset: int = DEFAULT_OPSET) -> Path:
    """Export `wrapper` to `path` with the batch axis symbolic, and check the file with onnx's checker.

    The graph is traced with a batch of 2 (a batch of 1 would let the tracer specialise the batch dimension).
    """
    example = torch.randn(2, *spec.shape)
    batch = torch.export.Dim("batch", min=1, max=_MAX_TRACE_BATCH)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        program = torch.onnx.export(
            wrapper,
            (example,),
            input_names=[INPUT_NAME],
            output_names=wrapper.output_names(),
            dynamic_shapes={"images": {0: batch}},
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
    program.save(str(path))
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    batch_dims = [inp.type.tensor_type.shape.dim[0] for inp in model.graph.input]
    if any(dim.dim_value for dim in batch_dims):
        raise RuntimeError(f"exported graph {path} has a fixed batch dimension: {batch_dims}")
    logger.info("exported %s (opset %d, %.1f MB)", path, opset, path.stat().st_size / 1e6)
    return path

"""Checkpoint -> a `torch.export` program (`model.pt2`): the same network as the ONNX file, for the service's
optional torch engine (CUDA through PyTorch where onnxruntime-gpu is not installed).

The program has a dynamic batch axis like the ONNX graph and must reproduce the eager model on the parity images
within the export tolerance, or the export fails.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from export.wrapper import ExportWrapper
from labelserve.preprocess import PreprocessSpec

__all__ = ["TORCH_PROGRAM_FILENAME", "export_torch_program"]

logger = logging.getLogger(__name__)

TORCH_PROGRAM_FILENAME = "model.pt2"


def export_torch_program(wrapper: ExportWrapper, spec: PreprocessSpec, path: Path, max_batch: int,
                         parity_images: np.ndarray, tolerance: float) -> float:
    """Export and save the program; return the largest |program - eager| on the parity images.

    Raises:
        RuntimeError: the saved program differs from the eager model by more than `tolerance`.
    """
    example = torch.randn(2, *spec.shape)
    batch = torch.export.Dim("batch", min=1, max=max(2, max_batch))
    program = torch.export.export(wrapper.eval(), (example,), dynamic_shapes={"images": {0: batch}})
    torch.export.save(program, str(path))
    loaded = torch.export.load(str(path)).module()
    images = torch.from_numpy(parity_images)
    with torch.inference_mode():
        expected, got = wrapper(images), loaded(images)
    worst = max(float((a - b).abs().max()) for a, b in zip(expected, got, strict=True))
    if worst > tolerance:
        raise RuntimeError(f"the torch program differs from the eager model by {worst:.2e} > {tolerance:g}")
    logger.info("exported %s (%.1f MB), max |program - eager| %.2e", path, path.stat().st_size / 1e6, worst)
    return worst

"""Numeric parity between the PyTorch model and the exported engine, on real preprocessed images.

An export that does not reproduce the training framework's numbers is refused: serving a silently different model
is worse than serving none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from export.wrapper import ExportWrapper

__all__ = ["ParityError", "ParityReport", "check_onnx_parity", "largest_differences"]


class ParityError(RuntimeError):
    """The exported engine's outputs differ from PyTorch's beyond tolerance."""


@dataclass(frozen=True)
class ParityReport:
    """Largest absolute differences seen, per output, over every batch size tried."""

    max_abs_diff: dict[str, float]
    tolerance: float
    batch_sizes: tuple[int, ...]
    num_images: int

    @property
    def passed(self) -> bool:
        return all(diff <= self.tolerance for diff in self.max_abs_diff.values())


def largest_differences(reference: Callable[[np.ndarray], Sequence[np.ndarray]],
                        candidate: Callable[[np.ndarray], Sequence[np.ndarray]], names: Sequence[str],
                        images: np.ndarray, batch_sizes: Sequence[int]) -> dict[str, float]:
    """Largest |reference - candidate| per named output, over `images` cut into batches of each size.

    Raises:
        ParityError: an output's shapes disagree.
    """
    worst = dict.fromkeys(names, 0.0)
    for batch in batch_sizes:
        for start in range(0, images.shape[0], batch):
            chunk = np.ascontiguousarray(images[start:start + batch])
            for name, expected, actual in zip(names, reference(chunk), candidate(chunk), strict=True):
                if expected.shape != actual.shape:
                    raise ParityError(f"output {name}: reference shape {expected.shape}, exported shape "
                                      f"{actual.shape}")
                worst[name] = max(worst[name], float(np.max(np.abs(expected - actual))))
    return worst


def check_onnx_parity(
    wrapper: ExportWrapper, onnx_path: Path, images: np.ndarray, tolerance: float = 1e-4, raise_on_failure: bool = True
) -> ParityReport:
    """Run PyTorch and onnxruntime (CPU) on the same images, at batch 1 and at the full batch.

    Args:
        wrapper: the module that was exported.
        onnx_path: the exported graph.
        images: preprocessed images `[N, 3, H, W]` float32.
        tolerance: largest acceptable absolute difference (fp32: 1e-4 on logits).
        raise_on_failure: raise ParityError instead of returning a failing report.
    """
    if images.ndim != 4 or images.shape[0] < 1:
        raise ValueError(f"parity needs images [N, 3, H, W], got {images.shape}")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = wrapper.output_names()
    input_name = session.get_inputs()[0].name
    batch_sizes = tuple(sorted({1, images.shape[0]}))

    def eager(chunk: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            return [t.numpy() for t in wrapper(torch.from_numpy(chunk))]

    worst = largest_differences(eager, lambda chunk: session.run(names, {input_name: chunk}), names, images,
                                batch_sizes)
    report = ParityReport(worst, tolerance, batch_sizes, int(images.shape[0]))
    if raise_on_failure and not report.passed:
        raise ParityError(f"onnxruntime differs from PyTorch beyond {tolerance}: {worst}")
    return report

"""Numeric parity between the PyTorch model and the exported engine, on real preprocessed images.

An export that does not reproduce the training framework's numbers is refused: serving a silently different model
is worse than serving none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from export.wrapper import ExportWrapper
from labelserve.errors import ExportError

__all__ = ["ParityError", "ParityReport", "check_onnx_parity", "differences_and_scales", "largest_differences"]


class ParityError(ExportError, RuntimeError):
    """The exported engine's outputs differ from PyTorch's beyond tolerance."""


@dataclass(frozen=True)
class ParityReport:
    """Largest absolute differences seen, per output, over every batch size tried.

    An output passes when its difference is within `tolerance` times its scale: the largest magnitude the reference
    gave, at least 1. So outputs within [-1, 1] (probabilities, attention) are held to `tolerance` absolutely, and
    logits to `tolerance` relative to their range: float32 rounding grows with the values, and a sensitive head
    (Query2Label over 144 tokens: 3e-4 on logits of 5.6, PyTorch's own float32 is 1e-4 from float64) is not a wrong
    export, which is off by orders of magnitude more.
    """

    max_abs_diff: dict[str, float]
    tolerance: float
    batch_sizes: tuple[int, ...]
    num_images: int
    scale: dict[str, float] = field(default_factory=dict)

    def allowed(self, name: str) -> float:
        """The largest difference output `name` may show."""
        return self.tolerance * max(1.0, self.scale.get(name, 1.0))

    @property
    def passed(self) -> bool:
        return all(diff <= self.allowed(name) for name, diff in self.max_abs_diff.items())


def largest_differences(reference: Callable[[np.ndarray], Sequence[np.ndarray]],
                        candidate: Callable[[np.ndarray], Sequence[np.ndarray]], names: Sequence[str],
                        images: np.ndarray, batch_sizes: Sequence[int]) -> dict[str, float]:
    """Largest |reference - candidate| per named output, over `images` cut into batches of each size.

    Raises:
        ParityError: an output's shapes disagree.
    """
    return differences_and_scales(reference, candidate, names, images, batch_sizes)[0]


def differences_and_scales(reference: Callable[[np.ndarray], Sequence[np.ndarray]],
                           candidate: Callable[[np.ndarray], Sequence[np.ndarray]], names: Sequence[str],
                           images: np.ndarray, batch_sizes: Sequence[int]) -> tuple[dict[str, float], dict[str, float]]:
    """`largest_differences`, and the largest |reference| per output (its scale)."""
    worst, scale = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0)
    for batch in batch_sizes:
        for start in range(0, images.shape[0], batch):
            chunk = np.ascontiguousarray(images[start:start + batch])
            for name, expected, actual in zip(names, reference(chunk), candidate(chunk), strict=True):
                if expected.shape != actual.shape:
                    raise ParityError(f"output {name}: reference shape {expected.shape}, exported shape "
                                      f"{actual.shape}")
                worst[name] = max(worst[name], float(np.max(np.abs(expected - actual))))
                scale[name] = max(scale[name], float(np.max(np.abs(expected))))
    return worst, scale


def check_onnx_parity(
    wrapper: ExportWrapper, onnx_path: Path, images: np.ndarray, tolerance: float = 1e-4, raise_on_failure: bool = True
) -> ParityReport:
    """Run PyTorch and onnxruntime (CPU) on the same images, at batch 1 and at the full batch.

    Args:
        wrapper: the module that was exported.
        onnx_path: the exported graph.
        images: preprocessed images `[N, 3, H, W]` float32.
        tolerance: largest acceptable difference per unit of an output's scale (ParityReport; fp32: 1e-4).
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

    worst, scale = differences_and_scales(eager, lambda chunk: session.run(names, {input_name: chunk}), names,
                                          images, batch_sizes)
    report = ParityReport(worst, tolerance, batch_sizes, int(images.shape[0]), scale)
    if raise_on_failure and not report.passed:
        allowed = {name: report.allowed(name) for name in names}
        raise ParityError(f"onnxruntime differs from PyTorch beyond {tolerance} of each output's scale: {worst} "
                          f"(allowed {allowed})")
    return report

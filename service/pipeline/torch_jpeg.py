"""Plain JPEGs decoded and preprocessed by torch: nvJPEG and matrix-product resizing on a GPU, so the CPU cores that
would run libjpeg-turbo and Pillow's resize are left to HTTP and the batcher (`LABELSERVE_JPEG_DECODE=torch`).

Needs torch and TorchCodec (torchvision's image decoders are deprecated since 0.29 in its favour), imported only
when chosen. The transform is the one of
`labelserve.preprocess`, step for step: the same resize plan, Pillow's own integer resampling weights
(`labelserve.resample`) with Pillow's rounding after each pass, the same float32 normalisation. On the CPU
(TorchCodec's libjpeg-turbo) the result therefore equals the Pillow path; on a GPU nvJPEG's IDCT is not
libjpeg-turbo's and may differ by a level in some pixels. Only what the Pillow path calls a plain JPEG comes here
(`decode.is_plain_jpeg`, after the same header checks); a file without its end-of-image marker, or one TorchCodec
refuses, goes the Pillow way, so truncated uploads get the same 400 as before.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from labelserve.preprocess import PreprocessSpec, normalisation, resize_plan
from labelserve.resample import RESAMPLE_FILTERS, resample_matrix, round_like_pillow
from labelserve.torch_device import resolve_torch_device

__all__ = ["TorchJpegPreprocessor", "torch_device"]

logger = logging.getLogger(__name__)

_END_OF_IMAGE = b"\xff\xd9"
_MATRIX_CACHE_SIZE = 128  # (input side, output side) pairs kept on the device


def torch_device(name: str) -> Any:
    """`auto` -> CUDA when available, else the CPU; anything else as torch reads it.

    Raises:
        RuntimeError: torch or torchcodec is not installed, or a CUDA device is named and none is available.
    """
    try:
        import torch  # noqa: F401
        import torchcodec.decoders  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(f"LABELSERVE_JPEG_DECODE=torch needs torch and torchcodec (the gpu extra): "
                           f"{exc}") from exc
    return resolve_torch_device(name, "LABELSERVE_TORCH_DEVICE")


class TorchJpegPreprocessor:
    """JPEG bytes -> the network input `[3, H, W]` float32 of one preprocessing spec, computed on one torch device.

    Thread-safe: the service's decode threads call it concurrently.
    """

    def __init__(self, spec: PreprocessSpec, device: Any) -> None:
        """Prepare the normalisation on `device`; resampling matrices are built per image size on first use.

        Raises:
            ValueError: the spec's interpolation has no resampling matrix (nearest); keep Pillow for it.
        """
        import torch
        from torchcodec.decoders import decode_jpeg

        if spec.interpolation not in RESAMPLE_FILTERS:
            raise ValueError(f"torch JPEG decoding resizes with {sorted(RESAMPLE_FILTERS)}, not "
                             f"{spec.interpolation!r}")
        self._torch = torch
        self._decode_jpeg = decode_jpeg
        self._spec = spec
        self.device = device
        offset, scale = normalisation(spec)
        self._offset = torch.from_numpy(offset).to(device).view(3, 1, 1)
        self._scale = torch.from_numpy(scale).to(device).view(3, 1, 1)
        self._matrices: dict[tuple[int, int], Any] = {}
        self._lock = threading.Lock()

    def _matrix(self, in_size: int, out_size: int) -> Any:
        key = (in_size, out_size)
        with self._lock:
            matrix = self._matrices.get(key)
        if matrix is None:
            weights = resample_matrix(in_size, out_size, self._spec.interpolation)
            matrix = self._torch.from_numpy(np.array(weights)).to(self.device)
            with self._lock:
                if len(self._matrices) >= _MATRIX_CACHE_SIZE:
                    self._matrices.clear()
                self._matrices[key] = matrix
        return matrix

    def __call__(self, data: bytes) -> np.ndarray | None:
        """The network input for one JPEG, or None where the Pillow path must decode it."""
        if not data.rstrip(b"\0").endswith(_END_OF_IMAGE):
            return None  # truncated or trailing junk: Pillow decides what that is
        torch = self._torch
        try:
            image = self._decode_jpeg(data, mode="RGB", device=self.device)  # [3, h, w] uint8
        except (RuntimeError, ValueError):
            return None
        _, height, width = image.shape
        plan = resize_plan(width, height, self._spec)
        pixels = image.to(torch.float64)
        if plan.width != width:  # horizontal pass first, as Pillow does
            pixels = round_like_pillow(torch.matmul(pixels, self._matrix(width, plan.width).T))
        if plan.height != height:
            pixels = round_like_pillow(torch.matmul(self._matrix(height, plan.height), pixels))
        spec = self._spec
        pixels = pixels[:, plan.top:plan.top + spec.height, plan.left:plan.left + spec.width]
        normalised = (pixels.to(torch.float32) - self._offset) / self._scale
        return np.ascontiguousarray(normalised.cpu().numpy())

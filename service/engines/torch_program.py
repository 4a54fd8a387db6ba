"""The optional torch engine: runs a bundle's `torch.export` program (`model.pt2`) with PyTorch, on CUDA when present.

For machines with PyTorch and a GPU but no onnxruntime-gpu. torch is imported only when this engine is chosen
(`LABELSERVE_ENGINE=torch`), so the default onnxruntime path stays torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from labelserve.bundle import Bundle
from labelserve.torch_device import resolve_torch_device
from service.engines.base import EngineInfo, EngineLoadError, output_names, warm_up

__all__ = ["TorchProgramEngine"]


class TorchProgramEngine:
    """Runs `model.pt2` under `torch.inference_mode` on one device."""

    def __init__(self, bundle: Bundle, max_batch_size: int, device: str = "auto") -> None:
        """Describe the engine; nothing is loaded until `load()`.

        Args:
            bundle: a verified model version that ships a torch program.
            max_batch_size: largest batch the batcher will send (capped by the program's range).
            device: `auto` (CUDA when available, else CPU), or a torch device such as `cuda:1`.
        """
        spec = bundle.manifest.engine("torch")
        if spec is None:
            raise EngineLoadError(f"{bundle.path} ships no torch program (export with --torch-program); its engines "
                                  f"are {[e.format for e in bundle.manifest.engines]}")
        self._bundle = bundle
        self._path = bundle.file(spec.file)
        self._max_batch_size = min(max_batch_size, spec.max_batch)
        self._device_name = device
        self._module: Any = None
        self._device: Any = None

    @property
    def info(self) -> EngineInfo:
        """Engine name, the device in use once loaded, and the batch cap."""
        device = str(self._device) if self._device is not None else self._device_name
        return EngineInfo(name="torch", provider=device, max_batch_size=self._max_batch_size)

    def load(self) -> None:
        """Load the program onto the device and warm it up at batch 1 and the largest batch."""
        try:
            import torch
            from torch.export.passes import move_to_device_pass
        except ImportError as exc:
            raise EngineLoadError("LABELSERVE_ENGINE=torch needs PyTorch installed (the train extra)") from exc
        try:
            self._device = resolve_torch_device(self._device_name, "LABELSERVE_TORCH_DEVICE")
        except RuntimeError as exc:
            raise EngineLoadError(str(exc)) from exc
        try:
            # moves the program's baked-in constants too (e.g. positional encodings traced on the CPU), not only
            # its parameters as Module.to() would
            program = move_to_device_pass(torch.export.load(str(self._path)), self._device)
            self._module = program.module()
        except Exception as exc:  # torch raises many types for a bad or incompatible program
            raise EngineLoadError(f"torch cannot load {self._path}: {exc}") from exc
        warm_up(self, self._bundle.manifest, self._path)

    def run(self, batch: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Run one `[B, 3, H, W]` batch and return the requested outputs as float32 arrays."""
        import torch

        if self._module is None:
            raise RuntimeError("TorchProgramEngine.run called before load()")
        with torch.inference_mode():
            results = self._module(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self._device))
        by_name = dict(zip(output_names(self._bundle.manifest), results, strict=True))
        return {name: by_name[name].float().cpu().numpy() for name in outputs}

    def close(self) -> None:
        """Drop the program and hand its cached CUDA memory back, so a retired version frees the GPU."""
        self._module = None
        if self._device is not None and self._device.type == "cuda":
            import torch

            torch.cuda.empty_cache()

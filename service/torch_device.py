"""The one reading of LABELSERVE_TORCH_DEVICE, for the torch engine and the torch JPEG path (torch imported lazily
by the callers' modules, never by the default onnxruntime path)."""

from __future__ import annotations

from typing import Any

__all__ = ["resolve_torch_device"]


def resolve_torch_device(name: str) -> Any:
    """`auto` -> CUDA when torch sees a GPU, else the CPU; anything else (`cpu`, `cuda:1`) as torch reads it.

    Raises:
        RuntimeError: a CUDA device is named and torch sees none.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"LABELSERVE_TORCH_DEVICE={name} asked for, but torch sees no CUDA device")
    return device

"""The one reading of a torch device setting (`auto`, `cpu`, `cuda:1`), for training, the torch engine and the
torch JPEG path. torch is imported only inside the call, so `labelserve` itself stays torch-free on import."""

from __future__ import annotations

from typing import Any

__all__ = ["resolve_torch_device"]


def resolve_torch_device(name: str, setting: str = "device") -> Any:
    """`auto` -> CUDA when torch sees a GPU, else the CPU; anything else as torch reads it.

    Args:
        name: the configured value.
        setting: what the user set it with, for the error message (e.g. `LABELSERVE_TORCH_DEVICE`).

    Raises:
        RuntimeError: a CUDA device is named and torch sees none.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{setting}={name} asked for, but torch sees no CUDA device here; use auto or cpu")
    return device

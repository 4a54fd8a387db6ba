"""Which onnxruntime execution providers to use: from settings, checked against what this machine has.

`auto` takes the fastest available of TensorRT, CUDA and CPU (the onnxruntime-gpu wheel brings the first two;
the CPU wheel only the last). An explicit list is honoured as given, and a provider this build of onnxruntime
lacks is an error naming what it does have, so a GPU deployment that silently ran on CPU cannot happen.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnxruntime as ort

from service.engines.base import EngineLoadError

__all__ = ["PREFERENCE", "resolve_providers"]

PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_ALIASES = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}


def resolve_providers(requested: Sequence[str], available: Sequence[str] | None = None) -> tuple[str, ...]:
    """Execution providers in order of preference for `requested` (`auto`, or names such as `cuda`, `cpu`).

    Raises:
        EngineLoadError: a requested provider is not in this onnxruntime build.
    """
    have = tuple(available if available is not None else ort.get_available_providers())
    if list(requested) == ["auto"]:
        return tuple(p for p in PREFERENCE if p in have) or ("CPUExecutionProvider",)
    names = tuple(_ALIASES.get(name.lower(), name) for name in requested)
    if missing := [name for name in names if name not in have]:
        raise EngineLoadError(f"execution provider(s) {', '.join(missing)} are not available in this onnxruntime "
                              f"build; it has {', '.join(have)} (set LABELSERVE_EXECUTION_PROVIDERS=auto to use the "
                              "best of those)")
    return names

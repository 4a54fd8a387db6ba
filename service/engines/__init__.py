"""Inference backends behind one interface, and the factory that picks one for a bundle."""

from __future__ import annotations

from collections.abc import Sequence

from labelserve.bundle import Bundle
from service.engines.base import Engine, EngineInfo, EngineLoadError

__all__ = ["Engine", "EngineInfo", "EngineLoadError", "create_engine"]


def create_engine(bundle: Bundle, max_batch_size: int, intra_op_threads: int = 0,
                  execution_providers: Sequence[str] = ("auto",)) -> Engine:
    """The engine to serve `bundle` with (not loaded yet): onnxruntime on the providers that settings ask for and
    this machine has (`service.engines.providers`). Native TensorRT plans are not served yet."""
    if bundle.manifest.engine("onnx") is None:
        raise EngineLoadError(f"{bundle.path} has no engine this server can run; it ships "
                              f"{[e.format for e in bundle.manifest.engines]}, this server runs: onnx")
    from service.engines.onnxruntime import OnnxRuntimeEngine
    from service.engines.providers import resolve_providers

    return OnnxRuntimeEngine(bundle, max_batch_size=max_batch_size, intra_op_threads=intra_op_threads,
                             providers=resolve_providers(execution_providers))

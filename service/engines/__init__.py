"""Inference backends behind one interface, and the factory that picks one for a bundle."""

from __future__ import annotations

from collections.abc import Sequence

from labelserve.bundle import Bundle
from service.engines.base import Engine, EngineInfo, EngineLoadError

__all__ = ["ENGINES", "Engine", "EngineInfo", "EngineLoadError", "create_engine"]

ENGINES = ("onnxruntime", "tensorrt", "torch")


def create_engine(bundle: Bundle, max_batch_size: int, intra_op_threads: int = 0,
                  execution_providers: Sequence[str] = ("auto",), engine: str = "onnxruntime",
                  torch_device: str = "auto", intra_op_spinning: bool = False, lone_session: bool = True) -> Engine:
    """The engine to serve `bundle` with (not loaded yet).

    `onnxruntime` (the default) runs `model.onnx` on the execution providers that settings ask for and this machine
    has (`service.engines.providers`); `tensorrt` runs the bundle's TensorRT plan natively on the first visible GPU
    (pick another with CUDA_VISIBLE_DEVICES); `torch` runs the bundle's `torch.export` program with PyTorch.
    """
    if engine == "tensorrt":
        from service.engines.tensorrt_plan import TensorRTPlanEngine

        return TensorRTPlanEngine(bundle, max_batch_size=max_batch_size)
    if engine == "torch":
        from service.engines.torch_program import TorchProgramEngine

        return TorchProgramEngine(bundle, max_batch_size=max_batch_size, device=torch_device)
    if engine != "onnxruntime":
        raise EngineLoadError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if bundle.manifest.engine("onnx") is None:
        raise EngineLoadError(f"{bundle.path} has no ONNX file; it ships {[e.format for e in bundle.manifest.engines]}")
    from service.engines.onnxruntime import OnnxRuntimeEngine
    from service.engines.providers import resolve_providers

    return OnnxRuntimeEngine(bundle, max_batch_size=max_batch_size, intra_op_threads=intra_op_threads,
                             providers=resolve_providers(execution_providers), spinning=intra_op_spinning,
                             lone_session=lone_session)

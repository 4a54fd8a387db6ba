"""What the Open Inference Protocol says about the server and its models, whatever carries it (HTTP, gRPC)."""

from __future__ import annotations

from importlib.metadata import version as package_version
from typing import Any

from service.oip.inference import BYTES_INPUT, output_specs
from service.state import ServiceState

__all__ = ["EXTENSIONS", "model_document", "server_document"]

EXTENSIONS = ("binary_tensor_data", "statistics", "model_repository")

# Triton's platform names for what each engine runs (KServe leaves the field free-form).
_PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "tensorrt": "tensorrt_plan", "torch": "torch_export"}


def model_document(state: ServiceState, name: str, version: int | None) -> dict[str, Any]:
    """Inputs, outputs, versions, platform and labels of a served model (404 for one that is not served)."""
    model = state.repository.get(name, version)
    served = [m.version for m in state.repository.models() if m.name == name]
    return {
        "name": model.name,
        "versions": [str(version)] if version is not None else [str(v) for v in served],
        "platform": _PLATFORMS.get(model.engine.info.name, model.engine.info.name),
        "inputs": [{"name": model.manifest.input_name, "datatype": "FP32", "shape": [-1, *model.manifest.input.shape]},
                   {"name": BYTES_INPUT, "datatype": "BYTES", "shape": [-1]}],
        "outputs": output_specs(model),
        "parameters": {"labels": list(model.manifest.labels), "thresholds": list(model.manifest.thresholds)},
    }


def server_document() -> dict[str, Any]:
    """Server name, version and protocol extensions."""
    return {"name": "labelserve", "version": package_version("labelserve"), "extensions": list(EXTENSIONS)}

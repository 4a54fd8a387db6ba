"""Open Inference Protocol v2 routes: server and model metadata, health, readiness and `infer`.

`infer` takes exactly one input: `image_bytes` (BYTES, shape [N]: encoded images, decoded and preprocessed like
`/predict`) or the model's own input (FP32, [N, 3, H, W], already preprocessed by the manifest's spec). Outputs:
`probabilities` and `logits` by default, `attention` on request; each as JSON data or binary data
(`binary_data_output`, or `binary_data` per output).
"""

from __future__ import annotations

import uuid
from collections.abc import Coroutine
from importlib.metadata import version as package_version
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request, Response

from service.errors import InvalidParameterError, NotReadyError, TooManyImagesError
from service.observability import current_request_id
from service.oip.codec import (
    HEADER_LENGTH,
    InferRequest,
    OutputTensor,
    Tensor,
    decode_request,
    encode_response,
    load_json,
)
from service.oip.feedback import router as feedback_router
from service.oip.statistics import router as statistics_router
from service.oip.versions import parse_version
from service.pipeline.postprocess import sigmoid
from service.predictor import ImageUpload
from service.repository import ServedModel
from service.retention import PREDICTION_IDS_HEADER, keep_answers, prediction_ids
from service.routes._auth import require_api_key
from service.routes._guard import read_body, run_guarded
from service.state import ServiceState, StateDep

__all__ = ["router"]

BYTES_INPUT = "image_bytes"
PROBABILITIES = "probabilities"

router = APIRouter(prefix="/v2", tags=["open inference protocol"])
models_router = APIRouter(dependencies=[Depends(require_api_key)])


# Triton's platform names for what each engine runs (KServe leaves the field free-form).
_PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "tensorrt": "tensorrt_plan", "torch": "torch_export"}


def _output_specs(model: ServedModel) -> list[dict[str, Any]]:
    manifest = model.manifest
    classes = len(manifest.labels)
    specs = [{"name": PROBABILITIES, "datatype": "FP32", "shape": [-1, classes]},
             {"name": manifest.outputs.logits.name, "datatype": "FP32", "shape": [-1, classes]}]
    if manifest.outputs.attention is not None:
        specs.append({"name": manifest.outputs.attention.name, "datatype": "FP32",
                      "shape": [-1, *manifest.outputs.attention.shape[1:]]})
    return specs


def _metadata(state: ServiceState, name: str, version: int | None) -> dict[str, Any]:
    model = state.repository.get(name, version)
    served = [m.version for m in state.repository.models() if m.name == name]
    return {
        "name": model.name,
        "versions": [str(version)] if version is not None else [str(v) for v in served],
        "platform": _PLATFORMS.get(model.engine.info.name, model.engine.info.name),
        "inputs": [{"name": model.manifest.input_name, "datatype": "FP32", "shape": [-1, *model.manifest.input.shape]},
                   {"name": BYTES_INPUT, "datatype": "BYTES", "shape": [-1]}],
        "outputs": _output_specs(model),
        "parameters": {"labels": list(model.manifest.labels), "thresholds": list(model.manifest.thresholds)},
    }


@router.get("")
async def server_metadata() -> dict[str, Any]:
    """Server name, version and protocol extensions."""
    return {"name": "labelserve", "version": package_version("labelserve"),
            "extensions": ["binary_tensor_data", "statistics", "model_repository"]}


@router.get("/health/live")
async def live() -> Response:
    """The process answers."""
    return Response(status_code=200)


@router.get("/health/ready")
async def ready(state: StateDep) -> Response:
    """Every model is loaded and warm."""
    if not state.ready:
        raise NotReadyError("models are still loading or the server is shutting down")
    return Response(status_code=200)


@models_router.get("/models/{name}")
@models_router.get("/models/{name}/versions/{version}")
async def model_metadata(state: StateDep, name: str, version: str | None = None) -> dict[str, Any]:
    """Inputs, outputs, versions and labels of a served model."""
    return _metadata(state, name, parse_version(version))


@models_router.get("/models/{name}/ready")
@models_router.get("/models/{name}/versions/{version}/ready")
async def model_ready(state: StateDep, name: str, version: str | None = None) -> Response:
    """200 when that model (version) is served, 404 otherwise."""
    state.repository.get(name, parse_version(version))
    return Response(status_code=200)


@models_router.post("/repository/index")
async def repository_index(request: Request, state: StateDep) -> list[dict[str, str]]:
    """Triton's model repository extension, read-only: every model version in the repository with its state
    (READY, LOADING, UNAVAILABLE) and why it is not ready. Body: optional `{"ready": true}` to list only ready ones.
    Versions are loaded and unloaded by the repository itself (hot reload), never through the API."""
    body = await read_body(request)
    document = load_json(body, "the repository index request") if body.strip() else {}
    if not isinstance(document, dict) or not isinstance(document.get("ready", False), bool) or set(document) - {
            "ready"}:
        raise InvalidParameterError('the repository index request takes an optional {"ready": true|false}, got '
                                    f"{body[:100]!r}")
    entries = []
    for entry in state.repository.index():
        if document.get("ready", False) and entry.state != "READY":
            continue
        item = {"name": entry.name, "version": str(entry.version), "state": entry.state}
        entries.append({**item, "reason": entry.reason} if entry.reason else item)
    return entries


def _inference(state: ServiceState, model: ServedModel, tensor: Tensor,
               attention: bool) -> Coroutine[Any, Any, list[dict[str, np.ndarray]]]:
    """The work for one input tensor: encoded images go through decode like /predict's, FP32 tensors straight to the
    batcher."""
    manifest = model.manifest
    count = tensor.shape[0] if tensor.shape else 0
    if count > state.settings.max_images_per_request:
        raise TooManyImagesError(f"{count} images in one request, over the limit of "
                                 f"{state.settings.max_images_per_request} (LABELSERVE_MAX_IMAGES_PER_REQUEST)")
    if tensor.name == BYTES_INPUT and tensor.datatype == "BYTES" and len(tensor.shape) == 1:
        assert isinstance(tensor.values, list)
        uploads = [ImageUpload(filename=f"{BYTES_INPUT}[{i}]", data=data) for i, data in enumerate(tensor.values)]
        return state.predictor.infer_uploads(model, uploads, attention)
    if tensor.name == manifest.input_name and tensor.datatype == "FP32":
        if tensor.shape[1:] != manifest.input.shape:
            expected = ", ".join(map(str, manifest.input.shape))
            raise InvalidParameterError(f"input {tensor.name!r} must have shape [N, {expected}], got "
                                        f"{list(tensor.shape)}")
        assert isinstance(tensor.values, np.ndarray)
        return state.predictor.infer(model, list(tensor.values), attention)
    raise InvalidParameterError(f"send one input: {BYTES_INPUT!r} (BYTES, [N]) or {manifest.input_name!r} "
                                f"(FP32, [N, {', '.join(map(str, manifest.input.shape))}]); got {tensor.name!r} "
                                f"({tensor.datatype}, {list(tensor.shape)})")


def _flag(parameters: dict[str, Any], name: str, default: bool, where: str) -> bool:
    """A boolean parameter, which must be a JSON boolean: `bool("false")` is True, so a string is refused (400)."""
    value = parameters.get(name, default)
    if not isinstance(value, bool):
        raise InvalidParameterError(f"{where}parameters.{name} must be true or false (a JSON boolean), got "
                                    f"{str(value)[:40]!r}")
    return value


def _wanted_outputs(request: InferRequest, model: ServedModel) -> list[tuple[str, bool]]:
    """(name, binary) of each output to return, in the order asked."""
    default_binary = _flag(request.parameters, "binary_data_output", False, "")
    known = [spec["name"] for spec in _output_specs(model)]
    if request.outputs is None:
        return [(PROBABILITIES, default_binary), (model.manifest.outputs.logits.name, default_binary)]
    wanted = []
    for output in request.outputs:
        if output.name not in known:
            raise InvalidParameterError(f"unknown output {output.name!r}; this model has {', '.join(known)}")
        wanted.append((output.name, _flag(output.parameters, "binary_data", default_binary,
                                          f"output {output.name!r}: ")))
    return wanted


def _empty(model: ServedModel, name: str) -> np.ndarray:
    """An output for no images: zero rows, the output's other axes kept (`[0, labels]`, `[0, labels, h, w]`)."""
    shape = next(spec["shape"] for spec in _output_specs(model) if spec["name"] == name)
    return np.zeros((0, *shape[1:]), np.float32)


def _gather(model: ServedModel, results: list[dict[str, np.ndarray]], name: str) -> np.ndarray:
    logits_name = model.manifest.outputs.logits.name
    if name == PROBABILITIES:
        return sigmoid(np.stack([r[logits_name] for r in results])).astype(np.float32)
    return np.stack([r[name] for r in results])


@models_router.post("/models/{name}/infer")
@models_router.post("/models/{name}/versions/{version}/infer")
async def infer(request: Request, state: StateDep, name: str, version: str | None = None) -> Response:
    """Run the model on a batch of encoded images or preprocessed tensors."""
    body = await read_body(request)
    infer_request, tensors = decode_request(body, request.headers.get(HEADER_LENGTH))
    if len(tensors) != 1:
        raise InvalidParameterError(f"send exactly one input, {BYTES_INPUT!r} or the model's FP32 input; got "
                                    f"{len(tensors)}")
    async with state.repository.lease(name, parse_version(version), request.scope) as model:
        outputs = _wanted_outputs(infer_request, model)
        attention_name = model.manifest.outputs.attention.name if model.has_attention else None
        needs_attention = any(output == attention_name for output, _ in outputs)
        work = _inference(state, model, tensors[0], needs_attention)
        results = await run_guarded(request, work, state.settings.request_timeout_s)
    tensors_out = [OutputTensor(out, _gather(model, results, out) if results else _empty(model, out), binary)
                   for out, binary in outputs]
    ids = prediction_ids(infer_request.id or current_request_id() or uuid.uuid4().hex, len(results))
    if results and state.settings.retain_predictions:
        images = tensors[0].values if tensors[0].datatype == "BYTES" and state.settings.retain_images else None
        await keep_answers(state.store, state.metrics, model.name, model.version, ids,
                           list(_gather(model, results, PROBABILITIES)),
                           list(images) if isinstance(images, list) else [None] * len(results))
    body, header_length = encode_response(model.name, model.version, infer_request.id, tensors_out,
                                          {"prediction_ids": ids})
    headers = {PREDICTION_IDS_HEADER: ",".join(ids)}
    if header_length is None:
        return Response(body, media_type="application/json", headers=headers)
    return Response(body, media_type="application/octet-stream",
                    headers={**headers, HEADER_LENGTH: str(header_length)})


router.include_router(statistics_router)  # before /models/{name}, which would take "stats" for a model name
router.include_router(feedback_router)
router.include_router(models_router)

"""Open Inference Protocol v2 routes: server and model metadata, health, readiness and `infer`.

`infer` takes exactly one input: `image_bytes` (BYTES, shape [N]: encoded images, decoded and preprocessed like
`/predict`) or the model's own input (FP32, [N, 3, H, W], already preprocessed by the manifest's spec). Outputs:
`probabilities` and `logits` by default, `attention` on request; each as JSON data or binary data
(`binary_data_output`, or `binary_data` per output).
"""

from __future__ import annotations

from collections.abc import Awaitable, Coroutine
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request, Response

from service import tracing
from service.errors import InvalidParameterError, NotReadyError
from service.oip.codec import HEADER_LENGTH, decode_request, encode_response, load_json
from service.oip.feedback import router as feedback_router
from service.oip.inference import infer as run_infer
from service.oip.metadata import model_document, server_document
from service.oip.statistics import router as statistics_router
from service.oip.versions import parse_version
from service.retention import PREDICTION_IDS_HEADER
from service.routes._auth import require_api_key
from service.routes._guard import read_body, run_guarded
from service.state import StateDep, app_state

__all__ = ["is_inference_path", "router"]

router = APIRouter(prefix="/v2", tags=["open inference protocol"])
models_router = APIRouter(dependencies=[Depends(require_api_key)])


@router.get("")
async def server_metadata() -> dict[str, Any]:
    """Server name, version and protocol extensions."""
    return server_document()


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
    return model_document(state, name, parse_version(version))


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


# infer takes the bare request, like /predict: no dependencies to solve, the API key checked at the door
# (service.admission), the path parameters read from the match.
@router.post("/models/{name}/infer", response_model=dict[str, Any])
@router.post("/models/{name}/versions/{version}/infer", response_model=dict[str, Any])
async def infer(request: Request) -> Response:
    """Run the model on a batch of encoded images or preprocessed tensors."""
    state = app_state(request)
    infer_request, tensors = decode_request(await read_body(request), request.headers.get(HEADER_LENGTH))

    def guard(work: Coroutine[Any, Any, list[dict[str, np.ndarray]]]) -> Awaitable[list[dict[str, np.ndarray]]]:
        return run_guarded(request, work, state.settings.request_timeout_s)

    answer = await run_infer(state, request.path_params["name"], parse_version(request.path_params.get("version")),
                             infer_request, tensors, request.scope, guard)
    with tracing.span("encode"):
        body, header_length = encode_response(answer.model, answer.version, answer.request_id, answer.outputs,
                                              {"prediction_ids": answer.ids})
    headers = {PREDICTION_IDS_HEADER: ",".join(answer.ids)}
    if header_length is None:
        return Response(body, media_type="application/json", headers=headers)
    return Response(body, media_type="application/octet-stream",
                    headers={**headers, HEADER_LENGTH: str(header_length)})


def is_inference_path(path: str) -> bool:
    """Whether a POST to `path` is an infer (admission's compute stage applies to it)."""
    return path.startswith("/v2/models/") and path.endswith("/infer")


router.include_router(statistics_router)  # before /models/{name}, which would take "stats" for a model name
router.include_router(feedback_router)
router.include_router(models_router)

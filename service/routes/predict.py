"""POST /predict: multipart images in, per-label probabilities (and attention maps) out.

The handler reads the body itself (`service.multipart`), validates the form fields with one pydantic model and
writes the JSON with orjson, rather than declaring FastAPI form parameters and a response model: on a CPU server the
event loop is the bottleneck, and FastAPI's dependency solving, form parsing and response validation were a third
of its time per request. The OpenAPI description is what FastAPI would generate for the same form, so /docs and
generated clients see no difference.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labelserve.schemas import PredictResponse
from service import tracing
from service.errors import (
    ImageTooLargeError,
    InvalidParameterError,
    TooManyImagesError,
    UnsupportedMediaTypeError,
    error_responses,
)
from service.multipart import Part, boundary_of, parse_form
from service.observability import current_request_id
from service.pipeline import PostprocessOptions
from service.pipeline.postprocess import AttentionFormat
from service.predictor import ImageAnswer, ImageUpload
from service.retention import PREDICTION_IDS_HEADER, keep_answers, prediction_ids
from service.routes._guard import read_body, run_guarded
from service.settings import Settings
from service.state import app_state

__all__ = ["PredictParameters", "is_inference_path", "router"]

FILES_FIELD = "files"
_ACCEPTED_PART_TYPES = ("image/", "application/octet-stream")


class PredictParameters(BaseModel):
    """The form fields of /predict besides the images."""

    model_config = ConfigDict(extra="ignore", frozen=True, protected_namespaces=())

    model: str | None = Field(default=None, description="model name; default: the first served model by name")
    version: int | None = Field(default=None, ge=1, description="model version; default: the newest served")
    top_k: int | None = Field(default=None, ge=1, description="return only the k most probable labels")
    threshold: float | None = Field(default=None, ge=0.0, le=1.0, description="overrides every per-label threshold")
    attention: bool = Field(default=False, description="return attention maps of the predicted labels")
    attention_format: AttentionFormat = Field(
        default="png", description="png: base64 greyscale PNGs at the image's aspect ratio (field attention); array: "
                                   "the network's own [h, w] maps as numbers, to upsample yourself (attention_maps)")
    timeout_s: float | None = Field(default=None, gt=0.0, le=3600.0, description="this request's deadline in "
                                    "seconds; default LABELSERVE_REQUEST_TIMEOUT_S")


def _form_schema() -> dict[str, Any]:
    files = {"type": "array", "items": {"type": "string", "contentMediaType": "application/octet-stream"},
             "title": "Files", "description": "one or more images (JPEG, PNG, WebP, GIF, BMP, TIFF)"}
    fields = PredictParameters.model_json_schema()["properties"]
    return {"title": "PredictForm", "type": "object", "required": [FILES_FIELD],
            "properties": {FILES_FIELD: files, **fields}}


router = APIRouter(tags=["predict"])
_ERRORS = error_responses(400, 401, 404, 413, 415, 422, 500, 503, 504)


def _upload(part: Part, index: int, max_image_bytes: int) -> ImageUpload:
    filename = part.filename or f"file{index}"
    content_type = part.content_type or "application/octet-stream"
    if not content_type.startswith(_ACCEPTED_PART_TYPES):
        raise UnsupportedMediaTypeError(f"{filename} was sent as {content_type}; send images (image/jpeg, "
                                        "image/png, ...) or application/octet-stream")
    if len(part.data) > max_image_bytes:
        raise ImageTooLargeError(f"{filename} has {len(part.data)} bytes, over the limit of {max_image_bytes} "
                                 "(LABELSERVE_MAX_IMAGE_BYTES)")
    return ImageUpload(filename=filename, data=part.data)


def _parameters(parts: list[Part]) -> PredictParameters:
    """The last value of every non-file field; empty values count as absent, as in an HTML form."""
    values = {part.name: part.data.decode("utf-8", "replace") for part in parts if part.name != FILES_FIELD}
    try:
        return PredictParameters.model_validate({name: value for name, value in values.items() if value != ""})
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from None


async def _read_form(request: Request, settings: Settings) -> tuple[list[ImageUpload], PredictParameters]:
    boundary = boundary_of(request.headers.get("content-type", ""))
    parts = parse_form(await read_body(request), boundary)
    files = [part for part in parts if part.name == FILES_FIELD]
    if not files:
        raise RequestValidationError([{"loc": (FILES_FIELD,), "msg": "Field required", "type": "missing"}])
    if len(files) > settings.max_images_per_request:
        raise TooManyImagesError(f"{len(files)} images in one request, over the limit of "
                                 f"{settings.max_images_per_request} (LABELSERVE_MAX_IMAGES_PER_REQUEST)")
    parameters = _parameters(parts)
    return [_upload(part, index, settings.max_image_bytes) for index, part in enumerate(files)], parameters


def _result(answer: ImageAnswer, answer_id: str) -> dict[str, Any]:
    prediction = answer.prediction
    result: dict[str, Any] = {
        "id": answer_id, "filename": answer.filename, "width": answer.width, "height": answer.height,
        "labels": [{"name": name, "probability": probability} for name, probability in prediction.labels],
        "predicted": prediction.predicted,
    }
    if prediction.attention is not None:
        result["attention"] = prediction.attention
    if prediction.attention_maps is not None:
        result["attention_maps"] = prediction.attention_maps  # float32 arrays, written as nested lists by orjson
    return result


@router.post("/predict", response_model=PredictResponse, responses=_ERRORS, openapi_extra={
    "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": _form_schema()}}}})
async def predict(request: Request) -> Response:
    """Label every uploaded image; one result per file, in upload order."""
    state = app_state(request)
    settings = state.settings
    uploads, parameters = await _read_form(request, settings)
    async with state.repository.lease(parameters.model, parameters.version, request.scope) as served:
        if parameters.attention and not served.has_attention:
            raise InvalidParameterError(f"model {served.name!r} has no attention output; send attention=false")
        options = PostprocessOptions(top_k=parameters.top_k, threshold=parameters.threshold,
                                     attention=parameters.attention, attention_format=parameters.attention_format,
                                     attention_max_side=settings.attention_max_side)
        timeout_s = parameters.timeout_s if parameters.timeout_s is not None else settings.request_timeout_s
        answers = await run_guarded(request, state.predictor.predict(served, uploads, options), timeout_s)
    ids = prediction_ids(current_request_id() or uuid.uuid4().hex, len(answers))
    if settings.retain_predictions:
        await keep_answers(state.store, state.metrics, served.name, served.version, ids,
                           [answer.prediction.probabilities for answer in answers],
                           [upload.data if settings.retain_images else None for upload in uploads])
    with tracing.span("encode"):
        body = {"model": served.name, "version": served.version,
                "results": [_result(answer, answer_id) for answer, answer_id in zip(answers, ids, strict=True)]}
        encoded = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(encoded, media_type="application/json", headers={PREDICTION_IDS_HEADER: ",".join(ids)})


def is_inference_path(path: str) -> bool:
    """Whether a POST to `path` is a prediction (admission's compute stage applies to it)."""
    return path == "/predict"

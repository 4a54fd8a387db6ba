"""POST /predict: multipart images in, per-label probabilities (and attention maps) out."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile
from fastapi.routing import APIRoute

from labelserve.schemas import ImageResult, LabelScore, PredictResponse
from service.errors import (
    ImageTooLargeError,
    InvalidParameterError,
    TooManyImagesError,
    UnsupportedMediaTypeError,
    error_responses,
)
from service.pipeline import PostprocessOptions
from service.predictor import ImageAnswer, ImageUpload
from service.routes._auth import require_api_key
from service.routes._guard import run_guarded
from service.state import StateDep

__all__ = ["router"]

_ACCEPTED_PART_TYPES = ("image/", "application/octet-stream")


class _MultipartRoute(APIRoute):
    """Refuses bodies that are not multipart/form-data before FastAPI parses them (415, not a confusing 422)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler with the content-type check."""
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            content_type = request.headers.get("content-type", "")
            if not content_type.lower().startswith("multipart/form-data"):
                raise UnsupportedMediaTypeError(f"send images as multipart/form-data in the field 'files', not as "
                                                f"{content_type or 'a body without a content type'}")
            return await handler(request)

        return checked


router = APIRouter(tags=["predict"], route_class=_MultipartRoute, dependencies=[Depends(require_api_key)])
_ERRORS = error_responses(400, 401, 404, 413, 415, 422, 500, 503, 504)


async def _read_upload(upload: UploadFile, index: int, max_image_bytes: int) -> ImageUpload:
    filename = upload.filename or f"file{index}"
    content_type = (upload.content_type or "application/octet-stream").lower()
    if not content_type.startswith(_ACCEPTED_PART_TYPES):
        raise UnsupportedMediaTypeError(f"{filename} was sent as {content_type}; send images (image/jpeg, "
                                        "image/png, ...) or application/octet-stream")
    if upload.size is not None and upload.size > max_image_bytes:
        raise ImageTooLargeError(f"{filename} has {upload.size} bytes, over the limit of {max_image_bytes} "
                                 "(LABELSERVE_MAX_IMAGE_BYTES)")
    data = await upload.read(max_image_bytes + 1)  # the decoder refuses the extra byte with the same message
    return ImageUpload(filename=filename, data=data)


def _to_result(answer: ImageAnswer) -> ImageResult:
    prediction = answer.prediction
    return ImageResult(filename=answer.filename, width=answer.width, height=answer.height,
                       labels=[LabelScore(name=name, probability=p) for name, p in prediction.labels],
                       predicted=prediction.predicted, attention=prediction.attention)


@router.post("/predict", response_model=PredictResponse, response_model_exclude_none=True, responses=_ERRORS)
async def predict(
    request: Request,
    state: StateDep,
    files: Annotated[list[UploadFile], File(description="one or more images (JPEG, PNG, WebP, GIF, BMP, TIFF)")],
    model: Annotated[str | None, Form(description="model name; default: the first served model by name")] = None,
    version: Annotated[int | None, Form(ge=1, description="model version; default: the newest served")] = None,
    top_k: Annotated[int | None, Form(ge=1, description="return only the k most probable labels")] = None,
    threshold: Annotated[float | None, Form(ge=0.0, le=1.0, description="overrides every per-label threshold")] = None,
    attention: Annotated[bool, Form(description="return attention maps of the predicted labels")] = False,
    timeout_s: Annotated[float | None, Form(gt=0.0, le=3600.0, description="this request's deadline in seconds; "
                                            "default LABELSERVE_REQUEST_TIMEOUT_S")] = None,
) -> PredictResponse:
    """Label every uploaded image; one result per file, in upload order."""
    settings = state.settings
    if len(files) > settings.max_images_per_request:
        raise TooManyImagesError(f"{len(files)} images in one request, over the limit of "
                                 f"{settings.max_images_per_request} (LABELSERVE_MAX_IMAGES_PER_REQUEST)")
    async with state.repository.lease(model, version) as served:
        if attention and not served.has_attention:
            raise InvalidParameterError(f"model {served.name!r} has no attention output; send attention=false")
        uploads = [await _read_upload(upload, index, settings.max_image_bytes) for index, upload in enumerate(files)]
        options = PostprocessOptions(top_k=top_k, threshold=threshold, attention=attention,
                                     attention_max_side=settings.attention_max_side)
        answers = await run_guarded(request, state.predictor.predict(served, uploads, options),
                                    timeout_s if timeout_s is not None else settings.request_timeout_s)
    return PredictResponse(model=served.name, version=served.version, results=[_to_result(a) for a in answers])

"""Response bodies of the HTTP API, shared by the service (which declares them) and `labelserve.client` (which
parses them), so both sides read one definition. No torch, no service imports.

The examples are what the OpenAPI page at `/docs` shows.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ErrorBody", "FeedbackResponse", "ImageResult", "InputInfo", "LabelScore", "ModelInfo", "ModelList",
           "PredictResponse", "ReadyStatus"]

_RESULT_EXAMPLE = {
    "id": "5f0c2a9d1e7b4c3a8d6e0f1a2b3c4d5e", "filename": "000001.jpg", "width": 128, "height": 128,
    "labels": [{"name": "striped_red_square", "probability": 0.9994},
               {"name": "brown_pentagon", "probability": 0.9991},
               {"name": "dotted_blue_circle", "probability": 0.9988},
               {"name": "white_crescent", "probability": 0.6327}],
    "predicted": ["striped_red_square", "brown_pentagon", "dotted_blue_circle"],
}


class ErrorBody(BaseModel):
    """Every error response (the code is also in the `X-Error-Code` header)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"error": "notes.txt is not an image in an accepted format (JPEG, PNG, WEBP, GIF, BMP, TIFF)",
         "code": "unsupported_image"}]})

    error: str = Field(description="what was wrong, for a human")
    code: str = Field(description="stable machine-readable error code")


class LabelScore(BaseModel):
    """One label's probability."""

    name: str
    probability: float = Field(ge=0.0, le=1.0)


class ImageResult(BaseModel):
    """The answer for one uploaded image."""

    model_config = ConfigDict(json_schema_extra={"examples": [_RESULT_EXAMPLE]})

    id: str = Field(default="", description="this answer's id, for feedback (POST /v2/models/{name}/feedback): the "
                                            "request's X-Request-ID for one image, <request id>/<index> for several")
    filename: str
    width: int = Field(description="pixels, after EXIF orientation")
    height: int
    labels: list[LabelScore] = Field(description="most probable first, limited to top_k")
    predicted: list[str] = Field(description="labels at or above their threshold, most probable first")
    attention: dict[str, str] | None = Field(
        default=None, description="predicted label -> base64 8-bit greyscale PNG at the image's aspect ratio, 255 "
                                  "where the label's attention peaks; only when attention=true (format png)")
    attention_maps: dict[str, list[list[float]]] | None = Field(
        default=None, description="predicted label -> the network's [h, w] attention map (cross-attention weights "
                                  "over the feature grid, not upsampled); only when attention=true and "
                                  "attention_format=array")


class PredictResponse(BaseModel):
    """Answer of POST /predict: one result per uploaded file, in upload order."""

    model_config = ConfigDict(protected_namespaces=(), json_schema_extra={"examples": [
        {"model": "demo", "version": 1, "results": [_RESULT_EXAMPLE]}]})

    model: str
    version: int
    results: list[ImageResult]


class InputInfo(BaseModel):
    """How images are fed to the network."""

    height: int
    width: int
    resize: str
    interpolation: str


class ModelInfo(BaseModel):
    """One served model."""

    name: str
    version: int
    task: str
    labels: list[str]
    thresholds: list[float] = Field(description="per-label decision thresholds, in the order of `labels`")
    input: InputInfo
    attention: bool = Field(description="whether attention maps can be requested")
    engine: str
    max_batch_size: int
    calibration: dict[str, object] | None = Field(
        default=None, description="for a version recalibrated from feedback (`labelserve calibrate`): its source "
                                  "version, policy, feedback answers and held-out micro F1 before and after; the "
                                  "per-label report is GET /models/{name}/versions/{version}/calibration")


class ModelList(BaseModel):
    """Answer of GET /models."""

    models: list[ModelInfo]


class ReadyStatus(BaseModel):
    """Answer of GET /readyz and /healthz."""

    status: str
    models: list[str] = Field(default_factory=list)


class FeedbackResponse(BaseModel):
    """What the server now knows of an answer after a feedback (POST /v2/models/{name}/feedback)."""

    id: str
    model: str
    version: int = Field(description="the version that gave the answer")
    present: list[str] = Field(description="labels known to be present")
    absent: list[str] = Field(description="labels known to be absent")
    unknown: int = Field(description="how many labels no feedback has spoken of yet")

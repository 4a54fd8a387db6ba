"""Response bodies of the HTTP API (request parameters are declared on the routes)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ErrorBody", "ImageResult", "InputInfo", "LabelScore", "ModelInfo", "ModelList", "PredictResponse",
           "ReadyStatus"]


class ErrorBody(BaseModel):
    """Every error response."""

    error: str = Field(description="what was wrong, for a human")
    code: str = Field(description="stable machine-readable error code")


class LabelScore(BaseModel):
    """One label's probability."""

    name: str
    probability: float = Field(ge=0.0, le=1.0)


class ImageResult(BaseModel):
    """The answer for one uploaded image."""

    filename: str
    width: int = Field(description="pixels, after EXIF orientation")
    height: int
    labels: list[LabelScore] = Field(description="most probable first, limited to top_k")
    predicted: list[str] = Field(description="labels at or above their threshold, most probable first")
    attention: dict[str, str] | None = Field(
        default=None, description="predicted label -> base64 8-bit greyscale PNG at the image's aspect ratio; "
                                  "only when attention=true")


class PredictResponse(BaseModel):
    """Answer of POST /predict: one result per uploaded file, in upload order."""

    model_config = ConfigDict(protected_namespaces=())

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
    input: InputInfo
    attention: bool = Field(description="whether attention maps can be requested")
    engine: str
    max_batch_size: int


class ModelList(BaseModel):
    """Answer of GET /models."""

    models: list[ModelInfo]


class ReadyStatus(BaseModel):
    """Answer of GET /readyz and /healthz."""

    status: str
    models: list[str] = Field(default_factory=list)

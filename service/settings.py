"""Service settings from `LABELSERVE_*` environment variables, validated once at the edge.

`create_app(settings)` takes a `Settings` explicitly, so tests build their own; only `python -m service` (and the
default of `create_app`) read the environment, through the cached `get_settings()`.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings", "get_settings"]

MIB = 1 << 20
_LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


class Settings(BaseSettings):
    """Everything the service can be configured with; each field is `LABELSERVE_<FIELD NAME>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="LABELSERVE_", extra="ignore", frozen=True,
                                      protected_namespaces=())

    model_repository: Path = Field(default=Path("models"), description="root of <model>/<version>/ folders")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: str = "INFO"
    workers: int = Field(default=1, ge=1, description="server processes sharing the port, each with its own batchers "
                                                      "and engines (service/workers.py)")

    max_batch_size: int = Field(default=16, ge=1, description="upper bound; the engine's max_batch also caps it")
    max_queue_delay_ms: float = Field(default=5.0, ge=0.0, le=10_000.0,
                                      description="longest a batch waits for more requests after its first one")
    max_queue_size: int = Field(default=256, ge=1, description="queued images per model before 503")
    max_in_flight: int | None = Field(default=None, ge=1, description="inference requests handled at once; more are "
                                      "answered 503 before their body is read (default: max_queue_size)")
    request_timeout_s: float = Field(default=30.0, gt=0.0, description="whole-request deadline before 504")

    max_image_bytes: int = Field(default=20 * MIB, ge=1)
    max_request_bytes: int = Field(default=64 * MIB, ge=1)
    max_image_pixels: int = Field(default=40_000_000, ge=1, description="width * height, checked from the header")
    max_images_per_request: int = Field(default=32, ge=1)

    decode_threads: int = Field(default=4, ge=1, description="threads per model for decode, preprocess and "
                                                           "postprocess")
    engine: Literal["onnxruntime", "tensorrt", "torch"] = Field(
        default="onnxruntime", description="onnxruntime (model.onnx), tensorrt (the bundle's TensorRT plan, run "
                                           "natively), or torch (the bundle's torch.export program)")
    torch_device: str = Field(default="auto", description="device of the torch engine and of torch JPEG decoding: "
                                                          "auto (CUDA if present) or e.g. cuda:0")
    jpeg_decode: Literal["pillow", "torch"] = Field(
        default="pillow", description="pillow (libjpeg-turbo via simplejpeg/Pillow on the CPU), or torch: plain JPEGs "
                                      "decoded and preprocessed by torch on TORCH_DEVICE (nvJPEG on a GPU)")
    execution_providers: Annotated[list[str], NoDecode] = Field(
        default=["auto"], min_length=1, description="onnxruntime providers: auto, or a list such as cuda,cpu")
    intra_op_threads: int = Field(default=0, ge=0, description="onnxruntime intra-op threads; 0 = its default")
    intra_op_spinning: bool = Field(default=False, description="onnxruntime's idle intra-op threads spin (lower "
                                                               "latency per op, CPU that decoding cannot use)")
    attention_max_side: int = Field(default=128, ge=1, description="longer side of attention maps returned as PNG, "
                                                                    "px (they carry 7x7 to 14x14 values; clients "
                                                                    "scale them up smoothly)")
    drain_timeout_s: float = Field(default=30.0, ge=0.0, description="how long shutdown waits for queued work")
    keep_alive_s: float = Field(default=75.0, gt=0.0, description="how long an idle client connection is kept open; "
                                "longer than clients and load balancers keep theirs, so the server never closes a "
                                "connection a client is about to reuse")
    api_key: SecretStr | None = Field(default=None, description="when set, inference and model routes need it in "
                                                                 "the X-API-Key header; health and metrics stay open")
    repository_poll_s: float = Field(default=5.0, ge=0.0,
                                     description="how often the repository is re-read for new versions; 0 = never")

    @field_validator("execution_providers", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_log_level(cls, value: object) -> str:
        level = str(value).upper()
        if level not in _LOG_LEVELS:
            raise ValueError(f"LABELSERVE_LOG_LEVEL={value!r} is not a log level; use one of {', '.join(_LOG_LEVELS)}")
        return level

    @model_validator(mode="after")
    def _limits_consistent(self) -> Settings:
        if self.max_request_bytes < self.max_image_bytes:
            raise ValueError(
                f"LABELSERVE_MAX_REQUEST_BYTES={self.max_request_bytes} is smaller than LABELSERVE_MAX_IMAGE_BYTES="
                f"{self.max_image_bytes}, so a largest allowed image could never be uploaded; raise the request limit"
            )
        return self

    @property
    def in_flight_limit(self) -> int:
        """`max_in_flight`, or `max_queue_size` when unset: about the requests the batch queue can take at once."""
        return self.max_in_flight if self.max_in_flight is not None else self.max_queue_size

    @property
    def log_level_number(self) -> int:
        """`log_level` as a `logging` level number."""
        return int(logging.getLevelName(self.log_level))


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, read once per process (call `get_settings.cache_clear()` to re-read)."""
    return Settings()

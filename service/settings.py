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
    grpc: bool = Field(default=True, description="serve the Open Inference Protocol over gRPC too (KServe v2 "
                                                 "GRPCInferenceService, service/oip_grpc) on grpc_port")
    grpc_port: int = Field(default=8001, ge=0, le=65535, description="gRPC port (Triton's default; 0: one the kernel "
                                                                     "picks, logged)")
    tracing: bool = Field(default=False, description="OpenTelemetry traces of every request, exported with OTLP as "
                                                     "the OTEL_* variables say (the tracing extra; service/tracing.py)")
    log_level: str = "INFO"
    workers: int = Field(default=1, ge=1, description="server processes sharing the port, each with its own batchers "
                                                      "and engines (service/workers.py)")

    max_batch_size: int = Field(default=16, ge=1, description="upper bound; the engine's max_batch also caps it")
    max_queue_delay_ms: float = Field(default=5.0, ge=0.0, le=10_000.0,
                                      description="longest a batch waits for more requests after its first one")
    max_queue_size: int = Field(default=256, ge=1, description="queued images per model before 503")
    max_in_flight: int | None = Field(default=None, ge=1, description="inference requests computed at once, counted "
                                      "from the moment their body is complete; more wait admission_wait_s, then "
                                      "503 (default: max_queue_size)")
    admission_wait_s: float = Field(default=1.0, ge=0.0, description="how long a request beyond max_in_flight or "
                                    "max_uploads waits for a slot before its 503 (0: refused at once)")
    request_timeout_s: float = Field(default=30.0, gt=0.0, description="whole-request deadline: 408 while the body "
                                     "is still arriving, 504 once it is computing")

    # The HTTP layer (service/http): every phase of a connection has a time limit, and uploads in transit have a
    # budget of their own, so slow or greedy clients cannot hold what ready requests need.
    max_connections: int = Field(default=4096, ge=1, description="open connections per server process; at the cap "
                                 "the longest-idle connection is closed for a new one, or the new one is refused 503 "
                                 "(lowered to the open-file limit minus a reserve)")
    header_timeout_s: float = Field(default=10.0, gt=0.0, description="from a request's first byte until its "
                                    "headers are complete, else 408 (three TCP retransmissions: 1 + 2 + 4 s)")
    body_stall_timeout_s: float = Field(default=10.0, gt=0.0, description="longest a request body may pause "
                                        "between bytes, else 408")
    body_min_rate: int = Field(default=1024, ge=0, description="bytes/s a request body must average once "
                                                               "body_grace_s has passed, else 408 (0: no minimum)")
    body_grace_s: float = Field(default=5.0, ge=0.0, description="time a body has before body_min_rate applies")
    send_timeout_s: float = Field(default=10.0, gt=0.0, description="longest an answer may wait for a client that "
                                  "does not read it, before the connection is closed")
    max_header_bytes: int = Field(default=32 * 1024, ge=1024, description="request line and headers, bytes; 431 "
                                  "above (414 when the request target alone is larger)")
    max_header_fields: int = Field(default=100, ge=1, description="header lines per request; 431 above")
    max_uploads: int = Field(default=1024, ge=1, description="requests whose body is still arriving; more wait "
                             "admission_wait_s at the door, then 503")
    upload_buffer_bytes: int = Field(default=512 * MIB, ge=1, description="request bodies held in memory at once, "
                                     "arriving or computing; a body that would pass it gets 503")

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
    lone_session: bool = Field(default=True, description="onnxruntime on the CPU: a second session of each model "
                               "(its weights twice in memory) whose threads spin within a batch runs a request that "
                               "finds the server idle (about 0.5 ms less on a light model); under load one session "
                               "that does not spin serves every batch")
    attention_max_side: int = Field(default=128, ge=1, description="longer side of attention maps returned as PNG, "
                                                                    "px (they carry 7x7 to 14x14 values; clients "
                                                                    "scale them up smoothly)")
    drain_timeout_s: float = Field(default=30.0, ge=0.0, description="how long shutdown waits for queued work")
    keep_alive_s: float = Field(default=75.0, gt=0.0, description="how long an idle client connection is kept open, "
                                "before its first request or between two; longer than clients and load balancers "
                                "keep theirs, so the server never closes a connection a client is about to reuse")
    api_key: SecretStr | None = Field(default=None, description="when set, inference and model routes need it in "
                                                                 "the X-API-Key header; health and metrics stay open")
    repository_poll_s: float = Field(default=5.0, ge=0.0,
                                     description="how often the repository is re-read for new versions; 0 = never")

    # Answers kept for feedback, the feedback itself, and where (service/store).
    store_url: str | None = Field(default=None, description="sqlite:///<file> or postgresql://user:pass@host/db; "
                                  "default: a SQLite file beside the model repository (<repository>-feedback.sqlite3)")
    retain_predictions: bool = Field(default=True, description="keep each answered image's probabilities (never "
                                     "the image, unless retain_images) so its id can get feedback")
    retain_images: bool = Field(default=False, description="keep the image bytes too (for review or retraining)")
    retention_s: float = Field(default=7 * 86400.0, gt=0.0, description="answers are kept this long, s")
    retention_max_predictions: int = Field(default=1_000_000, ge=1, description="answers kept at most (the oldest "
                                           "go first)")
    feedback_retention_s: float = Field(default=365 * 86400.0, gt=0.0, description="feedback is kept this long, s")

    # Per-label health of every served version against its bundle's baseline (service/label_monitor.py).
    monitor_labels: bool = Field(default=True, description="count every answer per label and compare with the "
                                 "bundle's baseline")
    monitor_window_images: int = Field(default=2000, ge=10, description="answers in the sliding window, at most")
    monitor_window_s: float = Field(default=3600.0, gt=0.0, description="age of the sliding window, at most, s")
    drift_threshold: float = Field(default=0.25, gt=0.0, description="PSI at which a label is flagged as drifted")
    drift_min_images: int = Field(default=200, ge=1, description="answers the window needs before any label is "
                                  "flagged (fewer: PSI is mostly noise)")
    monitor_label_series: int = Field(default=100, ge=1, description="per-label Prometheus series per model "
                                      "version, at most: the most drifted labels; the rest are in /v2/.../stats")
    monitor_refresh_s: float = Field(default=5.0, gt=0.0, description="how often the per-label gauges are updated")

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
        if self.upload_buffer_bytes < self.max_request_bytes:
            raise ValueError(
                f"LABELSERVE_UPLOAD_BUFFER_BYTES={self.upload_buffer_bytes} is smaller than "
                f"LABELSERVE_MAX_REQUEST_BYTES={self.max_request_bytes}, so a largest allowed request could never be "
                "uploaded; raise the buffer"
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

"""Per-model serving settings, kept in the repository beside the versions: `<repository>/<model>/config.json`.

Like Triton's model configuration, but only what this service acts on: which versions to serve, how to batch,
and how to run them (engine, onnxruntime threads and spinning, decode threads). Every key is optional; absent keys
fall back to the service-wide settings. `labelserve tune` writes the batching and running keys it measured better
than where it started. Thread counts are per server process: with `LABELSERVE_WORKERS=N` every worker runs this many
(the worker supervisor's start-up line says so, and warns when N of them ask for more threads than there are cores);
without the key (or with 0) each worker gets the service's own count, which splits the cores between the workers.

    {"version_policy": {"latest": 2}, "max_batch_size": 8, "max_queue_delay_ms": 2, "max_queue_size": 64}
    {"version_policy": {"specific": [3, 5]}}
    {"max_batch_size": 16, "intra_op_threads": 2, "intra_op_spinning": false, "decode_threads": 2}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = ["MODEL_CONFIG_FILENAME", "ModelConfig", "ModelConfigError", "VersionPolicy", "load_model_config"]

MODEL_CONFIG_FILENAME = "config.json"


class ModelConfigError(Exception):
    """A model's config.json is unreadable or invalid; the model keeps its previous configuration."""


class VersionPolicy(BaseModel):
    """Which versions to serve: the newest `latest` that load, or exactly the `specific` ones (pinned)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latest: int | None = Field(default=None, ge=1)
    specific: tuple[int, ...] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> VersionPolicy:
        if (self.latest is None) == (self.specific is None):
            raise ValueError("version_policy needs exactly one of 'latest' (a count) or 'specific' (versions)")
        if self.specific is not None and (not self.specific or min(self.specific) < 1):
            raise ValueError("version_policy.specific must list version numbers >= 1")
        return self

    def candidates(self, versions: list[int]) -> list[int]:
        """Versions worth trying, newest first (for `latest`, loading stops once enough of them work)."""
        ordered = sorted(versions, reverse=True)
        if self.specific is not None:
            return [v for v in ordered if v in self.specific]
        return ordered

    @property
    def count(self) -> int | None:
        """How many versions to serve under `latest`; None for `specific`."""
        return self.latest


class ModelConfig(BaseModel):
    """One model's serving settings; None means "the service-wide setting"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version_policy: VersionPolicy = VersionPolicy(latest=1)
    max_batch_size: int | None = Field(default=None, ge=1)
    max_queue_delay_ms: float | None = Field(default=None, ge=0.0, le=10_000.0)
    max_queue_size: int | None = Field(default=None, ge=1)
    engine: Literal["onnxruntime", "tensorrt", "torch"] | None = None
    intra_op_threads: int | None = Field(default=None, ge=0, description="onnxruntime intra-op threads per server "
                                         "process; absent or 0: the service's own (LABELSERVE_INTRA_OP_THREADS, or "
                                         "the cores split between the workers)")
    intra_op_spinning: bool | None = Field(default=None, description="onnxruntime's idle threads spin")
    decode_threads: int | None = Field(default=None, ge=1, description="this model's decode/preprocess threads")

    @field_validator("intra_op_threads")
    @classmethod
    def _zero_is_the_service_default(cls, value: int | None) -> int | None:
        """0 meant "onnxruntime's default", one thread per core in every process: under N workers that pinned N
        threads on each core, overriding the service's split (issue 19); it now defers to the service."""
        return None if value == 0 else value


def load_model_config(model_dir: Path) -> ModelConfig:
    """The model's config.json, or the defaults when there is none.

    Raises:
        ModelConfigError: the file exists but is not valid JSON or not a valid config.
    """
    path = model_dir / MODEL_CONFIG_FILENAME
    if not path.is_file():
        return ModelConfig()
    try:
        return ModelConfig.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, ValidationError) as exc:
        raise ModelConfigError(f"{path}: {exc}") from exc

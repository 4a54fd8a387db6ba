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

Rolling a new version out label by label (the versions named must be served, so `version_policy` keeps both):

    {"version_policy": {"latest": 2}, "default_version": 1, "shadow": {"version": 2, "share": 1.0}}
    {"version_policy": {"latest": 2}, "default_version": 1, "canary": {"version": 2, "weight": 0.1}}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = ["MODEL_CONFIG_FILENAME", "CanaryConfig", "ModelConfig", "ModelConfigError", "ShadowConfig", "VersionPolicy",
           "load_model_config", "promote_version", "update_model_config"]

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


class ShadowConfig(BaseModel):
    """A candidate version that computes a copy of `share` of the default version's images, to be compared with it
    label by label (service.shadow); its answers are never returned."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    share: float = Field(default=1.0, gt=0.0, le=1.0)


class CanaryConfig(BaseModel):
    """A version that answers `weight` of the requests that name no version, the same clients every time: those
    whose `key_header` value (else their address) hashes below the weight (service.canary)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    weight: float = Field(ge=0.0, le=1.0)
    key_header: str = Field(default="X-Client-Key", min_length=1)


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
    lone_session: bool | None = Field(default=None, description="a second, spinning onnxruntime session for "
                                      "requests that find the server idle (LABELSERVE_LONE_SESSION)")
    decode_threads: int | None = Field(default=None, ge=1, description="this model's decode/preprocess threads")
    default_version: int | None = Field(default=None, ge=1, description="answers requests that name no version "
                                        "(default: the newest served); `labelserve promote` sets it")
    shadow: ShadowConfig | None = None
    canary: CanaryConfig | None = None

    @model_validator(mode="after")
    def _rollout_names_other_versions(self) -> ModelConfig:
        for role in ("shadow", "canary"):
            target = getattr(self, role)
            if target is not None and target.version == self.default_version:
                raise ValueError(f"{role}.version {target.version} is the default_version itself; name another one")
        return self

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


def update_model_config(model_dir: Path, changes: dict[str, object], remove: tuple[str, ...] = ()) -> ModelConfig:
    """Merge `changes` into the model's config.json and drop the `remove` keys (other keys, e.g. the version policy,
    are kept); validated before anything is written, and written atomically (the service reads it on its next poll).

    Raises:
        ModelConfigError: the existing file is invalid.
        ValidationError: the merged config is invalid (nothing is written).
    """
    existing = load_model_config(model_dir).model_dump(exclude_unset=True)
    merged = ModelConfig.model_validate({**{k: v for k, v in existing.items() if k not in remove}, **changes})
    path = model_dir / MODEL_CONFIG_FILENAME
    staged = path.with_suffix(".json.tmp")
    staged.write_text(json.dumps(merged.model_dump(mode="json", exclude_unset=True, exclude_none=True), indent=2)
                      + "\n", encoding="utf-8")
    staged.replace(path)
    return merged


def promote_version(model_dir: Path, version: int, versions: list[int]) -> ModelConfig:
    """Make `version` the one that answers requests naming no version: `default_version`, with a shadow or canary
    of that same version dropped (it is the primary now).

    Raises:
        ModelConfigError: the version does not exist, or the version policy does not serve it.
    """
    config = load_model_config(model_dir)
    if version not in versions:
        present = ", ".join(map(str, versions)) or "none"
        raise ModelConfigError(f"{model_dir} has no version {version} (it has {present})")
    policy = config.version_policy
    served = policy.candidates(versions)[:policy.count] if policy.count is not None else policy.candidates(versions)
    if version not in served:
        raise ModelConfigError(f"version {version} is not served under {MODEL_CONFIG_FILENAME}'s version_policy "
                               f"{policy.model_dump(exclude_none=True)} (served: {served}); widen the policy first")
    stale = tuple(role for role in ("shadow", "canary")
                  if getattr(config, role) is not None and getattr(config, role).version == version)
    return update_model_config(model_dir, {"default_version": version}, remove=stale)

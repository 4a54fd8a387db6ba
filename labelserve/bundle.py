"""The model bundle: the contract between export (writer) and the service (reader).

A model repository holds `<root>/<model name>/<integer version>/` with `manifest.json` and the engine files it
lists. Export writes a version into a hidden staging folder and renames it into place, so a reader never sees a
half-written version. No torch here: the service imports this module.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from labelserve.label_stats import Baseline
from labelserve.preprocess import PreprocessSpec

__all__ = [
    "MANIFEST_FILENAME",
    "Bundle",
    "BundleError",
    "Calibration",
    "EngineSpec",
    "Manifest",
    "OutputsSpec",
    "TensorSpec",
    "list_versions",
    "load_bundle",
    "next_version",
    "read_manifest",
    "sha256_file",
    "validate_model_name",
    "write_bundle",
]

MANIFEST_FILENAME = "manifest.json"
SCHEMA_VERSION = 1
_MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_VERSION_DIR = re.compile(r"^[1-9][0-9]*$")


class BundleError(Exception):
    """A bundle that cannot be served: missing or invalid manifest, wrong checksum, missing file."""


def validate_model_name(name: str) -> str:
    """Return `name` if it is a safe model name (no path separators, no traversal), else raise ValueError."""
    if not _MODEL_NAME.match(name) or ".." in name:
        raise ValueError(
            f"invalid model name {name!r}: use 1-64 characters of lower-case letters, digits, '_', '-' and '.', "
            "starting with a letter or digit"
        )
    return name


class TensorSpec(BaseModel):
    """One named tensor of the network; symbolic dimensions (the batch) are strings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    shape: tuple[int | str, ...]
    dtype: Literal["float32", "float16"] = "float32"


class OutputsSpec(BaseModel):
    """The network outputs: `logits [N, C]` always, `attention [N, C, h, w]` for heads that have it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    logits: TensorSpec
    attention: TensorSpec | None = None


class EngineSpec(BaseModel):
    """One runnable file of the bundle and the conditions it runs under."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["onnx", "tensorrt", "torch"]  # torch: a torch.export program (.pt2)
    file: str
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    min_batch: int = Field(default=1, ge=1)
    max_batch: int = Field(ge=1)
    opset: int | None = None
    device: str | None = Field(default=None, description="GPU architecture a TensorRT plan was built for")
    runtime_version: str | None = Field(default=None, description="TensorRT version a plan was built with")

    @model_validator(mode="after")
    def _batch_range(self) -> EngineSpec:
        if self.min_batch > self.max_batch:
            raise ValueError(f"min_batch {self.min_batch} is larger than max_batch {self.max_batch}")
        return self


class Calibration(BaseModel):
    """How a version's thresholds were recalibrated from feedback (`labelserve calibrate`): it shares the weights of
    `source_version`, and its per-label report is the bundle's `calibration.json`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source_version: int = Field(ge=1)
    policy: str
    answers: int = Field(ge=0, description="answers with feedback")
    holdout_answers: int = Field(ge=0, description="of them, held out to measure")
    labels_changed: int = Field(ge=0)
    micro_f1_before: float | None = Field(description="held-out micro F1 at the source's thresholds")
    micro_f1_after: float | None = Field(description="held-out micro F1 at these thresholds")


class Manifest(BaseModel):
    """Everything the service needs to run a model without knowing how it was trained."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    name: str
    version: int = Field(ge=1)
    task: Literal["objects", "attributes"]
    head: str
    backbone: str
    labels: tuple[str, ...] = Field(min_length=1)
    thresholds: tuple[float, ...]
    input_name: str = "images"
    input: PreprocessSpec
    outputs: OutputsSpec
    engines: tuple[EngineSpec, ...] = Field(min_length=1)
    files: dict[str, str] = Field(default_factory=dict, description="file name -> sha256 hex digest")
    metrics: dict[str, float] = Field(default_factory=dict)
    baseline: Baseline | None = Field(default=None, description="per-label statistics on the validation split, "
                                      "which the service compares its answers with (None: bundles from before, or "
                                      "exported without validation images)")
    calibration: Calibration | None = Field(default=None, description="set on a version recalibrated from "
                                            "feedback")
    producer: dict[str, str] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        return validate_model_name(name)

    @field_validator("thresholds")
    @classmethod
    def _thresholds_in_range(cls, thresholds: tuple[float, ...]) -> tuple[float, ...]:
        bad = [t for t in thresholds if not 0.0 <= t <= 1.0]
        if bad:
            raise ValueError(f"thresholds must lie in [0, 1], got {bad[:5]}")
        return thresholds

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        num_labels = len(self.labels)
        if len(set(self.labels)) != num_labels:
            raise ValueError("labels must be unique")
        if len(self.thresholds) != num_labels:
            raise ValueError(f"{len(self.thresholds)} thresholds for {num_labels} labels")
        if self.outputs.logits.shape[-1] != num_labels:
            raise ValueError(f"logits shape {self.outputs.logits.shape} does not end in the {num_labels} labels")
        attention = self.outputs.attention
        if attention is not None and (len(attention.shape) != 4 or attention.shape[1] != num_labels):
            raise ValueError(f"attention shape {attention.shape} is not [N, {num_labels}, h, w]")
        for engine in self.engines:
            if self.files and engine.file not in self.files:
                raise ValueError(f"engine file {engine.file!r} has no checksum in files")
        if self.baseline is not None and len(self.baseline.positive_rate) != num_labels:
            raise ValueError(f"the baseline has {len(self.baseline.positive_rate)} labels, the model {num_labels}")
        return self

    def engine(self, fmt: str) -> EngineSpec | None:
        """The engine of format `fmt` ('onnx', 'tensorrt'), or None if the bundle has none."""
        return next((e for e in self.engines if e.format == fmt), None)


@dataclass(frozen=True)
class Bundle:
    """A verified model version on disk."""

    path: Path
    manifest: Manifest

    def file(self, name: str) -> Path:
        """Absolute path of one of the bundle's files."""
        return self.path / name


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so large engines do not need to fit in memory twice."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def list_versions(model_dir: Path) -> list[int]:
    """Integer version folders of a model, ascending; staging folders and other names are ignored."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and _VERSION_DIR.match(p.name))


def next_version(model_dir: Path) -> int:
    """The version number a new export of this model gets."""
    versions = list_versions(model_dir)
    return versions[-1] + 1 if versions else 1


def read_manifest(version_dir: Path) -> Manifest:
    """Parse and validate `manifest.json` of a version folder, raising BundleError with the reason."""
    path = version_dir / MANIFEST_FILENAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BundleError(f"{path} is missing") from exc
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from exc
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        raise BundleError(f"{path} does not match the manifest schema: {exc}") from exc
    if str(manifest.version) != version_dir.name:
        raise BundleError(f"{path} says version {manifest.version} but lives in folder {version_dir.name!r}")
    if manifest.name != version_dir.parent.name:
        raise BundleError(f"{path} says model {manifest.name!r} but lives under {version_dir.parent.name!r}")
    return manifest


def load_bundle(version_dir: Path, verify_checksums: bool = True) -> Bundle:
    """Read a version folder and check that every listed file exists with the recorded sha256."""
    manifest = read_manifest(version_dir)
    for engine in manifest.engines:
        if engine.file not in manifest.files:
            raise BundleError(f"engine file {engine.file!r} is not listed in the manifest's files")
    for name, expected in manifest.files.items():
        path = version_dir / name
        if not path.is_file():
            raise BundleError(f"{path} is listed in the manifest but missing")
        if verify_checksums and sha256_file(path) != expected:
            raise BundleError(f"{path} does not match its sha256 in the manifest (corrupt or replaced file)")
    return Bundle(path=version_dir, manifest=manifest)


def write_bundle(root: Path, manifest: Manifest, files: dict[str, Path],
                 shared: dict[str, tuple[Path, str]] | None = None) -> Bundle:
    """Write a new version atomically: stage every file and the manifest, then rename the folder into place.

    Args:
        root: model repository root.
        manifest: the manifest to write; its `files` are filled in here from `files` and `shared`.
        files: bundle file name -> source path to copy.
        shared: bundle file name -> (a file of another version, its known sha256), hard-linked rather than copied
            (a recalibrated version shares its source's weights: no second copy of an engine on disk); a symbolic
            link where the file system cannot hard-link.

    Returns:
        The written bundle.
    """
    model_dir = root / manifest.name
    model_dir.mkdir(parents=True, exist_ok=True)
    final_dir = model_dir / str(manifest.version)
    if final_dir.exists():
        raise BundleError(f"{final_dir} already exists; versions are immutable, export a new version")
    staging = model_dir / f".staging-{manifest.version}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        checksums = {}
        for name, source in files.items():
            if Path(name).name != name:
                raise BundleError(f"bundle file names must be plain names, got {name!r}")
            target = staging / name
            shutil.copyfile(source, target)
            checksums[name] = sha256_file(target)
        for name, (source, digest) in (shared or {}).items():
            target = staging / name
            try:
                os.link(source, target)
            except OSError:  # another file system, or no hard links: point at it instead
                target.symlink_to(os.path.relpath(source.resolve(), staging.parent / str(manifest.version)))
            checksums[name] = digest
        complete = manifest.model_copy(update={"files": checksums})
        Manifest.model_validate(complete.model_dump())
        manifest_path = staging / MANIFEST_FILENAME
        manifest_path.write_text(complete.model_dump_json(indent=2) + "\n", encoding="utf-8")
        for path in staging.iterdir():
            _fsync(path)
        os.rename(staging, final_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Bundle(path=final_dir, manifest=complete)


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())

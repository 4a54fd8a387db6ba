"""The bundle contract: manifest validation, atomic writes, checksums, version listing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from labelserve.bundle import (
    BundleError,
    EngineSpec,
    Manifest,
    OutputsSpec,
    TensorSpec,
    list_versions,
    load_bundle,
    next_version,
    validate_model_name,
    write_bundle,
)
from labelserve.preprocess import PreprocessSpec


def _manifest(name: str = "demo", version: int = 1, labels: tuple[str, ...] = ("a", "b")) -> Manifest:
    count = len(labels)
    return Manifest(
        name=name, version=version, task="objects", head="linear", backbone="resnet18", labels=labels,
        thresholds=(0.5,) * count, input=PreprocessSpec(height=32, width=32),
        outputs=OutputsSpec(logits=TensorSpec(name="logits", shape=("batch", count)),
                            attention=TensorSpec(name="attention", shape=("batch", count, 1, 1))),
        engines=(EngineSpec(format="onnx", file="model.onnx", max_batch=8),),
    )


@pytest.fixture
def engine_file(tmp_path: Path) -> Path:
    path = tmp_path / "src.onnx"
    path.write_bytes(b"not really onnx, but bytes with a checksum")
    return path


def test_write_then_load_roundtrip(tmp_path: Path, engine_file: Path) -> None:
    bundle = write_bundle(tmp_path / "repo", _manifest(), {"model.onnx": engine_file})
    assert bundle.path == tmp_path / "repo" / "demo" / "1"
    loaded = load_bundle(bundle.path)
    assert loaded.manifest.labels == ("a", "b")
    assert set(loaded.manifest.files) == {"model.onnx"}
    assert not any(p.name.startswith(".staging") for p in (tmp_path / "repo" / "demo").iterdir())


def test_versions_are_immutable(tmp_path: Path, engine_file: Path) -> None:
    write_bundle(tmp_path, _manifest(), {"model.onnx": engine_file})
    with pytest.raises(BundleError, match="immutable"):
        write_bundle(tmp_path, _manifest(), {"model.onnx": engine_file})


def test_corrupt_file_is_detected(tmp_path: Path, engine_file: Path) -> None:
    bundle = write_bundle(tmp_path, _manifest(), {"model.onnx": engine_file})
    (bundle.path / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(bundle.path)


def test_missing_and_invalid_manifests(tmp_path: Path, engine_file: Path) -> None:
    version_dir = tmp_path / "demo" / "1"
    version_dir.mkdir(parents=True)
    with pytest.raises(BundleError, match="missing"):
        load_bundle(version_dir)
    (version_dir / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(version_dir)
    (version_dir / "manifest.json").write_text(json.dumps({"name": "demo"}))
    with pytest.raises(BundleError, match="schema"):
        load_bundle(version_dir)


def test_manifest_must_live_in_its_own_folder(tmp_path: Path, engine_file: Path) -> None:
    bundle = write_bundle(tmp_path, _manifest(version=1), {"model.onnx": engine_file})
    moved = bundle.path.parent / "2"
    bundle.path.rename(moved)
    with pytest.raises(BundleError, match="version 1"):
        load_bundle(moved)


def test_manifest_consistency_rules() -> None:
    with pytest.raises(ValidationError, match="thresholds"):
        Manifest.model_validate(_manifest().model_dump() | {"thresholds": (0.5,)})
    with pytest.raises(ValidationError, match="unique"):
        _manifest(labels=("a", "a"))
    with pytest.raises(ValidationError, match=r"\[0, 1\]"):
        Manifest.model_validate(_manifest().model_dump() | {"thresholds": (0.5, 1.5)})
    with pytest.raises(ValidationError, match="min_batch"):
        EngineSpec(format="onnx", file="m.onnx", min_batch=4, max_batch=2)


@pytest.mark.parametrize("name", ["../etc", "a/b", "", "UPPER", ".hidden", "x" * 65, "a..b"])
def test_unsafe_model_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid model name"):
        validate_model_name(name)


def test_version_listing_ignores_staging_and_junk(tmp_path: Path) -> None:
    for name in ("1", "3", "10", ".staging-4-abc", "latest", "007"):
        (tmp_path / name).mkdir()
    assert list_versions(tmp_path) == [1, 3, 10]
    assert next_version(tmp_path) == 11
    assert next_version(tmp_path / "absent") == 1

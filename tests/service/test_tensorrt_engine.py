"""The native TensorRT engine (LABELSERVE_ENGINE=tensorrt): plans built for another GPU or TensorRT are refused
with both sides named, a machine without TensorRT or a GPU refuses the version and keeps running, and on a GPU with
TensorRT the exported plan answers like onnxruntime (skipped elsewhere, saying why)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from service_testing import copy_model, served_models

from labelserve.bundle import Bundle, EngineSpec, load_bundle
from service.engines import EngineLoadError, create_engine
from service.engines.tensorrt_plan import TensorRTPlanEngine, plan_mismatch
from service.settings import Settings

_HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _plan_spec(device: str | None = "sm_90", runtime_version: str | None = "10.13.3.9") -> EngineSpec:
    return EngineSpec(format="tensorrt", file="model.plan", max_batch=16, device=device,
                      runtime_version=runtime_version)


def test_a_plan_built_here_fits() -> None:
    assert plan_mismatch(_plan_spec(), "10.13.3.9", "sm_90") is None


def test_the_build_number_does_not_matter_but_the_release_does() -> None:
    assert plan_mismatch(_plan_spec(), "10.13.3.1", "sm_90") is None
    problem = plan_mismatch(_plan_spec(), "10.14.1.48", "sm_90")
    assert problem is not None and "built with TensorRT 10.13.3.9, this machine has 10.14.1.48" in problem


def test_another_gpu_architecture_is_named_with_the_fix() -> None:
    problem = plan_mismatch(_plan_spec(), "10.13.3.9", "sm_89")
    assert problem is not None
    assert "built for sm_90, this GPU is sm_89" in problem and "labelserve export --tensorrt" in problem


def test_both_mismatches_are_reported_together() -> None:
    problem = plan_mismatch(_plan_spec(), "11.0.0.1", "sm_80")
    assert problem is not None and "sm_90" in problem and "11.0.0.1" in problem


def test_a_plan_of_unknown_origin_is_refused() -> None:
    assert plan_mismatch(_plan_spec(device=None), "10.13.3.9", "sm_90") is not None
    assert plan_mismatch(_plan_spec(runtime_version=None), "10.13.3.9", "sm_90") is not None


def test_a_bundle_without_a_plan_is_refused_with_the_fix(tiny_bundle: Bundle) -> None:
    with pytest.raises(EngineLoadError, match="--tensorrt"):
        create_engine(tiny_bundle, max_batch_size=8, engine="tensorrt")


def _bundle_with_plan(model_repository: Path, root: Path) -> Path:
    """A copy of the tiny model whose manifest also lists a plan file (its bytes are not a real plan: every test
    using it is about what happens before TensorRT reads one)."""
    target = copy_model(model_repository / "tiny" / "1", root, "planned", 1)
    plan = b"stands for a plan built on another machine"
    (target / "model.plan").write_bytes(plan)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["files"]["model.plan"] = hashlib.sha256(plan).hexdigest()
    manifest["engines"].append(_plan_spec().model_dump(mode="json"))
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


@pytest.mark.skipif(_HAS_TENSORRT, reason="TensorRT is installed here; this checks the message where it is not")
def test_without_tensorrt_the_engine_says_what_to_install(model_repository: Path, tmp_path: Path) -> None:
    engine = TensorRTPlanEngine(load_bundle(_bundle_with_plan(model_repository, tmp_path)), max_batch_size=8)
    assert engine.info.name == "tensorrt" and engine.info.max_batch_size == 8
    with pytest.raises(EngineLoadError, match="tensorrt and cuda-bindings"):
        engine.load()


@pytest.mark.skipif(_HAS_TENSORRT, reason="TensorRT is installed here; this checks a machine without it")
def test_the_service_refuses_the_version_and_keeps_running(model_repository: Path, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    _bundle_with_plan(model_repository, tmp_path)
    with caplog.at_level(logging.ERROR, logger="service.repository"):
        assert served_models(Settings(model_repository=tmp_path, engine="tensorrt")) == []
    assert "refusing" in caplog.text and "tensorrt" in caplog.text


def _gpu_with_tensorrt() -> str | None:
    """None where plans can be built and run here, else why not."""
    from export.tensorrt_plan import tensorrt_missing

    return tensorrt_missing()


@pytest.mark.gpu
@pytest.mark.skipif(_gpu_with_tensorrt() is not None, reason=f"needs TensorRT and a CUDA GPU: {_gpu_with_tensorrt()}")
def test_an_exported_plan_answers_like_onnxruntime(tiny_checkpoint: Path, photo_dir: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    from export.repository import export_bundle

    bundle, _ = export_bundle(tiny_checkpoint, tmp_path, "planned", max_batch=8, parity_images=[photo_dir],
                              tensorrt=True)
    spec = bundle.manifest.engine("tensorrt")
    assert spec is not None and spec.device is not None and spec.device.startswith("sm_")
    assert bundle.manifest.metrics["parity_max_abs_diff_tensorrt_logits"] <= 1e-3
    engine = create_engine(bundle, max_batch_size=8, engine="tensorrt")
    engine.load()
    try:
        session = ort.InferenceSession(str(bundle.file("model.onnx")), providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        for size in (1, 3, 8):
            batch = rng.standard_normal((size, *bundle.manifest.input.shape)).astype(np.float32)
            expected = session.run(["logits", "attention"], {bundle.manifest.input_name: batch})
            got = engine.run(batch, ["logits", "attention"])
            for name, value in zip(["logits", "attention"], expected, strict=True):
                assert got[name].shape == value.shape
                assert float(np.max(np.abs(got[name] - value))) <= 1e-3
            assert list(engine.run(batch, ["logits"])) == ["logits"]  # attention is not copied back unasked
    finally:
        engine.close()

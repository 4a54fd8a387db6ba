"""The optional torch engine (LABELSERVE_ENGINE=torch) serves the bundle's torch.export program with the same
answers as onnxruntime; a bundle without a program is refused with the fix; on CUDA it matches the CPU."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from service_testing import Reference, copy_model, image_parts, served_models
from starlette.testclient import TestClient

from labelserve.bundle import Bundle
from service.app import create_app
from service.engines.torch_program import TorchProgramEngine
from service.settings import Settings

Images = list[tuple[str, bytes]]


def test_the_bundle_ships_a_checked_torch_program(tiny_bundle: Bundle) -> None:
    spec = tiny_bundle.manifest.engine("torch")
    assert spec is not None and tiny_bundle.file(spec.file).is_file()
    assert tiny_bundle.manifest.metrics["parity_max_abs_diff_torch_program"] <= 1e-4


def test_torch_engine_answers_like_onnxruntime(model_repository: Path, val_jpegs: Images, photo_jpegs: Images,
                                               reference: Reference) -> None:
    settings = Settings(model_repository=model_repository, engine="torch", torch_device="cpu")
    with TestClient(create_app(settings)) as client:
        models = client.get("/models").json()["models"]
        assert models[0]["engine"] == "torch/cpu"
        assert client.get("/v2/models/tiny").json()["platform"] == "torch_export"  # the engine serving, not ONNX
        images = val_jpegs[:4] + photo_jpegs
        results = client.post("/predict", files=image_parts(*images)).json()["results"]
    for result, (_, data) in zip(results, images, strict=True):
        expected = reference(data)
        got = {label["name"]: label["probability"] for label in result["labels"]}
        assert max(abs(got[name] - expected[name]) for name in expected) <= 1e-4


def test_a_bundle_without_a_program_is_refused_with_the_fix(model_repository: Path, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    target = copy_model(model_repository / "tiny" / "1", tmp_path, "onnxonly", 1)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["engines"] = [e for e in manifest["engines"] if e["format"] == "onnx"]
    (target / "manifest.json").write_text(json.dumps(manifest))

    with caplog.at_level(logging.ERROR, logger="service.repository"):
        assert served_models(Settings(model_repository=tmp_path, engine="torch")) == []
    assert "--torch-program" in caplog.text


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; none is visible to torch here")
def test_torch_engine_on_cuda_matches_the_cpu(tiny_bundle: Bundle) -> None:
    batch = np.random.default_rng(0).standard_normal((4, *tiny_bundle.manifest.input.shape)).astype(np.float32)
    outputs = ["logits", "attention"]
    engines = {device: TorchProgramEngine(tiny_bundle, max_batch_size=8, device=device) for device in ("cpu", "cuda")}
    results = {}
    for device, engine in engines.items():
        engine.load()
        results[device] = engine.run(batch, outputs)
    for name in outputs:
        assert np.abs(results["cuda"][name] - results["cpu"][name]).max() <= 1e-3, name

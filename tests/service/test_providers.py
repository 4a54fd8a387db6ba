"""Execution providers come from settings and must exist here; `auto` takes the fastest available."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import onnxruntime as ort
import pytest
from service_testing import served_models

from service.engines.base import EngineLoadError
from service.engines.providers import resolve_providers
from service.observability import Metrics
from service.repository import ModelRepository
from service.settings import Settings


def test_auto_prefers_tensorrt_then_cuda_then_cpu() -> None:
    assert resolve_providers(["auto"], ["CPUExecutionProvider"]) == ("CPUExecutionProvider",)
    assert resolve_providers(["auto"], ["CPUExecutionProvider", "CUDAExecutionProvider"]) == (
        "CUDAExecutionProvider", "CPUExecutionProvider")
    assert resolve_providers(["auto"], ["CPUExecutionProvider", "CUDAExecutionProvider",
                                        "TensorrtExecutionProvider"])[0] == "TensorrtExecutionProvider"


def test_short_names_and_missing_providers() -> None:
    assert resolve_providers(["cuda", "cpu"], ["CUDAExecutionProvider", "CPUExecutionProvider"]) == (
        "CUDAExecutionProvider", "CPUExecutionProvider")
    with pytest.raises(EngineLoadError, match=r"TensorrtExecutionProvider are not available.*it has CPU"):
        resolve_providers(["tensorrt"], ["CPUExecutionProvider"])


def test_settings_read_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABELSERVE_EXECUTION_PROVIDERS", "cuda, cpu")
    assert Settings().execution_providers == ["cuda", "cpu"]


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(),
                    reason="this onnxruntime has CUDA; the refusal cannot be observed")
def test_a_gpu_model_on_a_cpu_build_is_refused_with_the_reason(model_repository: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="service.repository"):
        assert served_models(Settings(model_repository=model_repository, execution_providers=["cuda"])) == []
    assert "CUDAExecutionProvider are not available" in caplog.text


@pytest.mark.gpu
@pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(),
                    reason="needs onnxruntime-gpu with the CUDA execution provider; this build has "
                           f"{', '.join(ort.get_available_providers())}")
def test_cuda_provider_serves_the_model(model_repository: Path) -> None:
    async def scenario() -> str:
        repository = ModelRepository(Settings(model_repository=model_repository, execution_providers=["cuda"]),
                                     Metrics())
        await repository.load_all()
        provider = repository.get("tiny").engine.info.provider
        await repository.stop(1.0)
        return provider

    assert asyncio.run(scenario()) == "CUDAExecutionProvider"

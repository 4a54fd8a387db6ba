"""Metrics registries are per app; logs are JSON lines carrying the request id."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from starlette.testclient import TestClient

from service.app import create_app
from service.gpu_metrics import register_gpu_metrics
from service.observability import JsonFormatter, Metrics
from service.settings import Settings


def test_two_metrics_objects_do_not_share_series() -> None:
    first, second = Metrics(), Metrics()  # would raise "Duplicated timeseries" on a shared registry
    first.observer("m", 1).observe_batch(4, 0.01)
    assert first.registry.get_sample_value("labelserve_batch_size_sum", {"model": "m", "version": "1"}) == 4
    assert second.registry.get_sample_value("labelserve_batch_size_sum", {"model": "m", "version": "1"}) is None


def test_json_formatter_emits_one_object_with_extras_and_request_id() -> None:
    record = logging.LogRecord("service.test", logging.WARNING, __file__, 1, "queue %s is %d deep", ("m", 3), None)
    record.request_id = "req-1"
    record.status = 503
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "queue m is 3 deep"
    assert entry["level"] == "WARNING" and entry["logger"] == "service.test"
    assert entry["request_id"] == "req-1"
    assert entry["status"] == 503
    assert "ts" in entry


def test_json_formatter_includes_the_exception() -> None:
    try:
        raise ValueError("bad")
    except ValueError as exc:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), (type(exc), exc, exc.__traceback__))
    entry = json.loads(JsonFormatter().format(record))
    assert "ValueError: bad" in entry["exception"]


def _nvml_works() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # ImportError or any NVMLError: no usable NVML here
        return False
    return True


def test_errors_are_counted_by_route_and_code(model_repository: Path) -> None:
    with TestClient(create_app(Settings(model_repository=model_repository))) as client:
        response = client.post("/predict", files=[("files", ("notes.txt", b"plain text", "text/plain"))])
        assert response.headers["X-Error-Code"] == "unsupported_media_type"
        client.get("/nowhere")
        registry = client.app.state.labelserve.metrics.registry
        assert registry.get_sample_value("labelserve_errors_total",
                                         {"route": "/predict", "code": "unsupported_media_type"}) == 1
        assert registry.get_sample_value("labelserve_errors_total", {"route": "unmatched", "code": "not_found"}) == 1


def test_the_route_label_is_the_full_template_of_nested_routers(model_repository: Path) -> None:
    """The OIP routes live on a router included under /v2: their label must keep the prefix (it read
    `/models/{name}/infer`), and every label is one of the app's documented path templates."""
    with TestClient(create_app(Settings(model_repository=model_repository))) as client:
        client.post("/v2/models/tiny/infer", content=b"{not json")
        client.post("/v2/models/tiny/versions/1/infer", content=b"{}")
        client.get("/v2/models/tiny")
        client.get("/healthz")
        registry = client.app.state.labelserve.metrics.registry
        routes = {sample.labels["route"] for family in registry.collect() if family.name == "labelserve_requests"
                  for sample in family.samples if "route" in sample.labels}
        assert {"/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer", "/v2/models/{name}",
                "/healthz"} <= routes
        assert routes <= set(client.get("/openapi.json").json()["paths"]) | {"/openapi.json"}
        assert registry.get_sample_value("labelserve_errors_total",
                                         {"route": "/v2/models/{name}/infer", "code": "invalid_parameter"}) == 1


@pytest.mark.skipif(_nvml_works(), reason="NVML works here; the CPU-only behaviour cannot be observed")
def test_without_nvml_there_are_no_gpu_series_and_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    with caplog.at_level(logging.INFO, logger="service.gpu_metrics"):
        assert register_gpu_metrics(registry) is False
    assert "no GPU metrics" in caplog.text
    assert b"labelserve_gpu" not in generate_latest(registry)


@pytest.mark.gpu
@pytest.mark.skipif(not _nvml_works(), reason="needs an NVIDIA driver with NVML (nvidia-ml-py); none is usable here")
def test_gpu_memory_and_utilisation_are_scraped_from_nvml() -> None:
    registry = CollectorRegistry()
    assert register_gpu_metrics(registry)
    total = registry.get_sample_value("labelserve_gpu_memory_total_bytes", {"gpu": "0", "name": _gpu_name()})
    assert total and total > 0
    busy = registry.get_sample_value("labelserve_gpu_utilization_ratio", {"gpu": "0", "name": _gpu_name()})
    assert busy is not None and 0.0 <= busy <= 1.0


def _gpu_name() -> str:
    import pynvml

    pynvml.nvmlInit()
    return str(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0)))

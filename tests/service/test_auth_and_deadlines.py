"""API keys on the inference and model routes, and per-request deadlines and client disconnects that keep work
nobody will read off the engine."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from service_testing import assert_error, image_parts
from starlette.testclient import TestClient

from service.app import create_app
from service.settings import Settings

KEY = "s3cret-key"
Images = list[tuple[str, bytes]]


@pytest.fixture(scope="module")
def guarded(model_repository: Path) -> Iterator[TestClient]:
    """The app with an API key configured."""
    with TestClient(create_app(Settings(model_repository=model_repository, api_key=KEY))) as client:
        yield client


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": "Basic czNjcmV0LWtleQ=="}])
def test_inference_without_the_key_is_401(guarded: TestClient, val_jpegs: Images, headers: dict[str, str]) -> None:
    response = guarded.post("/predict", files=image_parts(val_jpegs[0]), headers=headers)
    assert_error(response, 401, "unauthorized", "API key")
    assert response.headers["WWW-Authenticate"].startswith("ApiKey")
    assert_error(guarded.get("/models", headers=headers), 401, "unauthorized")


@pytest.mark.parametrize("headers", [{"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}])
def test_the_key_opens_inference(guarded: TestClient, val_jpegs: Images, headers: dict[str, str]) -> None:
    assert guarded.post("/predict", files=image_parts(val_jpegs[0]), headers=headers).status_code == 200
    assert guarded.get("/models", headers=headers).status_code == 200


def test_probes_and_metrics_stay_open(guarded: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert guarded.get(path).status_code == 200, path


def test_a_per_request_deadline_answers_504_and_the_image_is_never_computed(model_repository: Path,
                                                                           val_jpegs: Images) -> None:
    # a 1 s batching window and another image announced (as if a second request were decoding a large file): the
    # batch waits for it, so this image is still queued when its 0.2 s deadline passes
    settings = Settings(model_repository=model_repository, max_queue_delay_ms=1000, request_timeout_s=30)
    with TestClient(create_app(settings)) as client:
        batcher = client.app.state.labelserve.repository.get("tiny").batcher
        announcement = contextlib.ExitStack()
        client.portal.call(announcement.enter_context, batcher.incoming())
        started = time.monotonic()
        response = client.post("/predict", files=image_parts(val_jpegs[0]), data={"timeout_s": "0.2"})
        assert time.monotonic() - started < 1.0
        assert_error(response, 504, "deadline_exceeded", "0.2 s")
        client.portal.call(announcement.close)
        time.sleep(1.2)  # past the batch window: a computed image would be counted by now
        images = client.app.state.labelserve.metrics.registry.get_sample_value(
            "labelserve_images_total", {"model": "tiny", "version": "1"})
        assert not images
        assert client.post("/predict", files=image_parts(val_jpegs[0])).status_code == 200  # the default still holds


async def _post_then_disconnect(app: object, request: httpx.Request, after_s: float) -> list[dict]:
    """Drive the ASGI app as uvicorn does for a client that sends its upload and hangs up `after_s` later."""
    body = request.read()
    delivered = False

    async def receive() -> dict:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(after_s)
        return {"type": "http.disconnect"}

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/predict", "raw_path": b"/predict", "query_string": b"", "root_path": "",
             "headers": [(k.lower(), v) for k, v in request.headers.raw],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
    await app(scope, receive, send)  # type: ignore[operator]
    return sent


def test_a_client_that_hangs_up_has_its_queued_image_dropped(model_repository: Path, val_jpegs: Images) -> None:
    # as in the deadline test, an announced image keeps the batch waiting (1 s window), so this image is still
    # queued when its client hangs up 0.2 s after sending it
    settings = Settings(model_repository=model_repository, max_queue_delay_ms=1000, request_timeout_s=30)
    request = httpx.Request("POST", "http://test/predict", files=image_parts(val_jpegs[0]))
    with TestClient(create_app(settings)) as client:
        state = client.app.state.labelserve
        announcement = contextlib.ExitStack()
        client.portal.call(announcement.enter_context, state.repository.get("tiny").batcher.incoming())
        started = time.monotonic()
        sent = client.portal.call(_post_then_disconnect, client.app, request, 0.2)
        assert time.monotonic() - started < 1.0  # let go at the hang-up, not at the end of the batch window
        assert sent[0]["status"] == 499  # nobody reads it; logs and metrics do
        client.portal.call(announcement.close)
        time.sleep(1.2)  # past the batch window: a computed image would be counted by now
        registry = state.metrics.registry
        assert not registry.get_sample_value("labelserve_images_total", {"model": "tiny", "version": "1"})
        assert registry.get_sample_value("labelserve_errors_total",
                                         {"route": "/predict", "code": "client_disconnected"}) == 1
        assert client.post("/predict", files=image_parts(val_jpegs[0])).status_code == 200  # and the model serves


@pytest.mark.parametrize("value", ["0", "-1", "soon", "4000"])
def test_a_nonsense_deadline_is_422(model_repository: Path, val_jpegs: Images, value: str) -> None:
    with TestClient(create_app(Settings(model_repository=model_repository))) as client:
        response = client.post("/predict", files=image_parts(val_jpegs[0]), data={"timeout_s": value})
    assert_error(response, 422, "validation_error", "timeout_s")


def test_the_key_guards_the_inference_protocol_but_not_its_health(guarded: TestClient) -> None:
    assert_error(guarded.post("/v2/models/tiny/infer", content=b"{}"), 401, "unauthorized")
    assert_error(guarded.get("/v2/models/tiny"), 401, "unauthorized")
    assert_error(guarded.post("/v2/models/tiny/feedback", json={"id": "x", "labels": []}), 401, "unauthorized")
    assert_error(guarded.get("/v2/models/tiny/stats"), 401, "unauthorized")
    assert guarded.get("/v2/models/tiny", headers={"X-API-Key": KEY}).status_code == 200
    for path in ("/v2", "/v2/health/live", "/v2/health/ready"):
        assert guarded.get(path).status_code == 200, path

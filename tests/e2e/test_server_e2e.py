"""A real uvicorn server, real JPEGs over HTTP: answers equal an in-process onnxruntime run of the same bundle,
concurrent requests share batches (proved from a Prometheus scrape), bad input gets JSON errors, SIGTERM drains."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from e2e_support import wait_for

from labelserve.bundle import Bundle
from labelserve_tools.loadgen import run_level
from labelserve_tools.local_server import ServerProcess, start_server
from tests.http_testing import slow_post

Reference = Callable[[bytes], dict[str, float]]

pytestmark = pytest.mark.e2e

Images = list[tuple[str, bytes]]
TOLERANCE = 1e-5


def _post(url: str, images: Images, **form: str) -> httpx.Response:
    files = [("files", (name, data, "image/jpeg")) for name, data in images]
    return httpx.post(f"{url}/predict", files=files, data=form, timeout=60)


def _probabilities(result: dict) -> dict[str, float]:
    return {label["name"]: label["probability"] for label in result["labels"]}


def _assert_matches_reference(result: dict, data: bytes, reference: Reference) -> None:
    expected = reference(data)
    got = _probabilities(result)
    assert got.keys() == expected.keys()
    worst = max(abs(got[name] - expected[name]) for name in expected)
    assert worst <= TOLERANCE, f"{result['filename']}: max |service - onnxruntime| = {worst:.2e}"


def test_scenes_and_photos_match_in_process_onnxruntime(
    server: ServerProcess, val_jpegs: Images, photo_jpegs: Images, reference: Reference, tiny_bundle: Bundle,
) -> None:
    images = val_jpegs[:6] + photo_jpegs
    response = _post(server.url, images)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"], body["version"]) == ("tiny", 1)
    assert [r["filename"] for r in body["results"]] == [name for name, _ in images]
    for result, (_, data) in zip(body["results"], images, strict=True):
        _assert_matches_reference(result, data, reference)
        probabilities = _probabilities(result)
        thresholds = dict(zip(tiny_bundle.manifest.labels, tiny_bundle.manifest.thresholds, strict=True))
        assert set(result["predicted"]) == {n for n, p in probabilities.items() if p >= thresholds[n]}
    assert body["results"][-1]["width"] == 640


def test_concurrent_requests_share_batches_and_each_gets_its_own_answer(
    server: ServerProcess, val_jpegs: Images, photo_jpegs: Images, reference: Reference,
) -> None:
    images = (val_jpegs + photo_jpegs) * 2  # 36 single-image requests, all different within a round
    labels = {"model": "tiny", "version": "1"}
    batches_before = server.metric("labelserve_batch_size_count", **labels)
    images_before = server.metric("labelserve_batch_size_sum", **labels)
    singles_before = server.metric("labelserve_batch_size_bucket", le="1.0", **labels)

    with ThreadPoolExecutor(max_workers=len(images)) as pool:
        responses = list(pool.map(lambda image: _post(server.url, [image]), images))

    for response, (name, data) in zip(responses, images, strict=True):
        assert response.status_code == 200, response.text
        (result,) = response.json()["results"]
        assert result["filename"] == name
        _assert_matches_reference(result, data, reference)
    batches = server.metric("labelserve_batch_size_count", **labels) - batches_before
    batched_images = server.metric("labelserve_batch_size_sum", **labels) - images_before
    singles = server.metric("labelserve_batch_size_bucket", le="1.0", **labels) - singles_before
    assert batched_images == len(images)
    assert batches < len(images), f"{len(images)} concurrent requests ran as {batches:.0f} batches"
    assert singles < batches, "no batch held more than one image"


def test_attention_maps_come_back_over_http(server: ServerProcess, photo_jpegs: Images) -> None:
    response = _post(server.url, photo_jpegs[:1], attention="true", threshold="0")
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert set(result["attention"]) == set(result["predicted"])
    assert len(result["predicted"]) == len(result["labels"])  # threshold 0 predicts every label


@pytest.mark.parametrize(("part", "status"), [
    (("notes.txt", b"not an image at all", "text/plain"), 415),
    (("fake.jpg", b"\xff\xd8\xff\xe0 this is no jpeg", "image/jpeg"), 400),
    (("huge.jpg", os.urandom(400_001), "image/jpeg"), 413),
])
def test_bad_input_gets_a_json_error_and_the_server_keeps_serving(server: ServerProcess, val_jpegs: Images,
                                                                  part: tuple[str, bytes, str], status: int) -> None:
    response = httpx.post(f"{server.url}/predict", files=[("files", part)], timeout=60)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] and body["code"]
    assert part[0] in body["error"]
    assert _post(server.url, val_jpegs[:1]).status_code == 200


def test_sigterm_answers_every_accepted_request_before_exiting(model_repository: Path, tmp_path: Path,
                                                               val_jpegs: Images, reference: Reference) -> None:
    images = val_jpegs[:6]
    with start_server(model_repository, tmp_path, max_batch_size="8") as draining, \
            ThreadPoolExecutor(max_workers=len(images)) as pool:
        futures = [pool.submit(slow_post, draining.url, image, 2.0) for image in images]
        wait_for(lambda: draining.metric("labelserve_requests_in_flight", method="POST") == len(images), timeout_s=30)
        draining.stop()  # SIGTERM while all six are still uploading
        responses = [future.result() for future in futures]
    for response, (_, data) in zip(responses, images, strict=True):
        assert response.status_code == 200, response.text
        _assert_matches_reference(response.json()["results"][0], data, reference)


def test_the_load_benchmark_client_speaks_to_the_real_server(server: ServerProcess, val_jpegs: Images) -> None:
    result = run_level(server.url, concurrency=4, seconds=1.0, payloads=[data for _, data in val_jpegs[:4]],
                       model="tiny")
    assert result["errors"] == {}
    assert result["ok"] > 0 and result["images_per_s"] > 0
    assert result["mean_batch_size"] >= 1.0


def test_the_server_runs_on_uvloop_and_httptools(server: ServerProcess) -> None:
    """The serve extra installs both; a server quietly back on asyncio + h11 costs 4-10 % more CPU per request."""
    assert "event loop uvloop, HTTP parser httptools" in server.log_path.read_text()
    response = httpx.get(f"{server.url}/healthz", timeout=10)  # and the httptools parser answers
    assert response.status_code == 200

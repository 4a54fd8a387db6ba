"""The real app in-process (TestClient runs its lifespan) on the tiny model with a real onnxruntime session."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from service_testing import Reference, assert_error, copy_model, image_parts, jpeg_bytes
from starlette.testclient import TestClient

from labelserve.bundle import Bundle
from labelserve.schemas import ErrorBody, PredictResponse
from service.app import create_app
from service.errors import ServiceError, status_code_for
from service.settings import Settings

ATOL = 1e-5


def _assert_matches_reference(result: dict, expected: dict[str, float]) -> None:
    got = {label["name"]: label["probability"] for label in result["labels"]}
    assert set(got) == set(expected)
    for name, probability in expected.items():
        assert got[name] == pytest.approx(probability, abs=ATOL), name


@pytest.fixture(scope="module")
def limited_client(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """Tight limits, a second model without attention output, and a deadline nothing can meet."""
    root = tmp_path_factory.mktemp("limited-repository")
    copy_model(model_repository / "tiny" / "1", root, "tiny", 1)
    copy_model(model_repository / "tiny" / "1", root, "plain", 1, drop_attention=True)
    settings = Settings(model_repository=root, max_images_per_request=2, max_image_bytes=60_000,
                        max_request_bytes=150_000, max_image_pixels=100_000)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_predict_one_image_matches_a_plain_onnxruntime_run(client: TestClient, tiny_bundle: Bundle,
                                                          val_jpegs: list[tuple[str, bytes]],
                                                          reference: Reference) -> None:
    name, data = val_jpegs[0]
    response = client.post("/predict", files=image_parts((name, data)))

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"], body["version"]) == ("tiny", 1)
    [result] = body["results"]
    assert (result["filename"], result["width"], result["height"]) == (name, 64, 64)
    assert "attention" not in result
    probabilities = [label["probability"] for label in result["labels"]]
    assert probabilities == sorted(probabilities, reverse=True)
    _assert_matches_reference(result, reference(data))
    thresholds = dict(zip(tiny_bundle.manifest.labels, tiny_bundle.manifest.thresholds, strict=True))
    expected = [label["name"] for label in result["labels"] if label["probability"] >= thresholds[label["name"]]]
    assert result["predicted"] == expected


def test_predict_many_images_keeps_upload_order(client: TestClient, val_jpegs: list[tuple[str, bytes]],
                                                photo_jpegs: list[tuple[str, bytes]], reference: Reference) -> None:
    uploads = [*val_jpegs[:5], *photo_jpegs]
    response = client.post("/predict", files=image_parts(*uploads))

    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["filename"] for r in results] == [name for name, _ in uploads]
    assert (results[-1]["width"], results[-1]["height"]) == Image.open(io.BytesIO(photo_jpegs[-1][1])).size
    for result, (_, data) in zip(results, uploads, strict=True):
        _assert_matches_reference(result, reference(data))


def test_top_k_returns_the_k_most_probable_labels(client: TestClient, val_jpegs: list[tuple[str, bytes]]) -> None:
    full = client.post("/predict", files=image_parts(val_jpegs[1])).json()["results"][0]
    top = client.post("/predict", files=image_parts(val_jpegs[1]), data={"top_k": "3"}).json()["results"][0]
    assert top["labels"] == full["labels"][:3]
    assert top["predicted"] == full["predicted"]


def test_threshold_overrides_the_manifest(client: TestClient, tiny_bundle: Bundle,
                                          val_jpegs: list[tuple[str, bytes]]) -> None:
    everything = client.post("/predict", files=image_parts(val_jpegs[2]), data={"threshold": "0"}).json()["results"][0]
    nothing = client.post("/predict", files=image_parts(val_jpegs[2]), data={"threshold": "1"}).json()["results"][0]
    assert everything["predicted"] == [label["name"] for label in everything["labels"]]
    assert len(everything["predicted"]) == len(tiny_bundle.manifest.labels)
    assert nothing["predicted"] == []


def test_attention_maps_decode_to_the_image_size(client: TestClient, photo_jpegs: list[tuple[str, bytes]],
                                                 val_jpegs: list[tuple[str, bytes]]) -> None:
    response = client.post("/predict", files=image_parts(photo_jpegs[0], val_jpegs[0]),
                           data={"attention": "true", "threshold": "0"})

    assert response.status_code == 200, response.text
    photo, scene = response.json()["results"]
    assert set(photo["attention"]) == set(photo["predicted"])
    assert len(photo["attention"]) > 0
    for encoded in photo["attention"].values():
        heatmap = Image.open(io.BytesIO(base64.b64decode(encoded)))
        assert heatmap.format == "PNG" and heatmap.mode == "L"
        assert heatmap.size == (128, 85)  # 640x427 capped at attention_max_side=128 (427 * 0.2 = 85.4)
        assert np.asarray(heatmap).max() == 255
    assert {Image.open(io.BytesIO(base64.b64decode(v))).size for v in scene["attention"].values()} == {(64, 64)}


def test_attention_as_arrays_are_the_networks_own_maps(client: TestClient, tiny_bundle: Bundle,
                                                       photo_jpegs: list[tuple[str, bytes]]) -> None:
    import onnxruntime as ort

    from labelserve.image import open_rgb
    from labelserve.preprocess import preprocess

    name, data = photo_jpegs[0]
    response = client.post("/predict", files=image_parts((name, data)),
                           data={"attention": "true", "attention_format": "array", "threshold": "0"})
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    assert "attention" not in result and set(result["attention_maps"]) == set(result["predicted"])
    manifest = tiny_bundle.manifest
    session = ort.InferenceSession(str(tiny_bundle.file("model.onnx")), providers=["CPUExecutionProvider"])
    batch = preprocess(open_rgb(io.BytesIO(data), manifest.input), manifest.input)[None]
    expected = session.run(["attention"], {"images": batch})[0][0]  # [C, h, w]
    for label, grid in result["attention_maps"].items():
        got = np.asarray(grid, dtype=np.float32)
        assert got.shape == expected.shape[1:]
        np.testing.assert_allclose(got, expected[manifest.labels.index(label)], atol=1e-6)


def test_an_unknown_attention_format_is_422(client: TestClient, val_jpegs: list[tuple[str, bytes]]) -> None:
    response = client.post("/predict", files=image_parts(val_jpegs[0]),
                           data={"attention": "true", "attention_format": "jpeg"})
    assert_error(response, 422, "validation_error", "attention_format")


def test_healthz_and_readyz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "alive", "models": []}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "models": ["tiny"]}


def test_readyz_is_503_until_the_lifespan_has_loaded_the_models(model_repository: Path) -> None:
    app = create_app(Settings(model_repository=model_repository))
    not_started = TestClient(app)  # no `with`: the lifespan never runs
    assert_error(not_started.get("/readyz"), 503, "not_ready")
    assert not_started.get("/healthz").status_code == 200


def test_models_lists_names_versions_labels_and_input(client: TestClient, tiny_bundle: Bundle) -> None:
    [model] = client.get("/models").json()["models"]
    assert model["name"] == "tiny" and model["version"] == 1
    assert model["labels"] == list(tiny_bundle.manifest.labels)
    assert model["thresholds"] == list(tiny_bundle.manifest.thresholds)  # what the page decides with
    assert model["input"]["height"] == 64 and model["input"]["width"] == 64
    assert model["attention"] is True
    assert model["max_batch_size"] == 8  # min(settings 16, the bundle's max_batch 8)


def test_metrics_expose_requests_batches_and_model_info(client: TestClient,
                                                        val_jpegs: list[tuple[str, bytes]]) -> None:
    assert client.post("/predict", files=image_parts(*val_jpegs[:4])).status_code == 200
    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert re.search(r'labelserve_requests_total\{method="POST",route="/predict",status="200"\} [1-9]', text)
    assert re.search(r'labelserve_request_duration_seconds_count\{method="POST",route="/predict"\} [1-9]', text)
    assert re.search(r'labelserve_images_total\{model="tiny",version="1"\} [1-9]', text)
    assert 'labelserve_batch_size_bucket{le="64.0",model="tiny",version="1"}' in text
    assert re.search(r'labelserve_queue_wait_seconds_count\{model="tiny",version="1"\} [1-9]', text)
    assert re.search(r'labelserve_inference_duration_seconds_count\{model="tiny",version="1"\} [1-9]', text)
    assert 'labelserve_queue_depth{model="tiny",version="1"} 0.0' in text
    assert ('labelserve_model_info{engine="onnxruntime",model="tiny",provider="CPUExecutionProvider",version="1"} '
            "1.0") in text


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    generated = client.get("/healthz").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert client.get("/healthz", headers={"X-Request-ID": "bad id\n"}).headers["x-request-id"] != "bad id\n"


def test_unknown_model_is_404(client: TestClient, val_jpegs: list[tuple[str, bytes]]) -> None:
    response = client.post("/predict", files=image_parts(val_jpegs[0]), data={"model": "nope"})
    assert_error(response, 404, "model_not_found", "nope")


def test_unknown_route_is_404_json(client: TestClient) -> None:
    assert_error(client.get("/nowhere"), 404, "not_found")


def test_model_field_selects_a_model(limited_client: TestClient, val_jpegs: list[tuple[str, bytes]]) -> None:
    default = limited_client.post("/predict", files=image_parts(val_jpegs[0])).json()
    chosen = limited_client.post("/predict", files=image_parts(val_jpegs[0]), data={"model": "tiny"}).json()
    assert default["model"] == "plain"  # first by name
    assert chosen["model"] == "tiny"
    assert default["results"][0]["labels"] == chosen["results"][0]["labels"]


def test_attention_from_a_model_without_it_is_400(limited_client: TestClient,
                                                  val_jpegs: list[tuple[str, bytes]]) -> None:
    response = limited_client.post("/predict", files=image_parts(val_jpegs[0]),
                                   data={"model": "plain", "attention": "1"})
    assert_error(response, 400, "invalid_parameter", "no attention output")


def test_too_many_files_is_413(limited_client: TestClient, val_jpegs: list[tuple[str, bytes]]) -> None:
    assert_error(limited_client.post("/predict", files=image_parts(*val_jpegs[:3])), 413, "too_many_images",
                  "MAX_IMAGES_PER_REQUEST")


def test_too_many_image_bytes_is_413(limited_client: TestClient) -> None:
    big = jpeg_bytes(Image.fromarray(np.random.default_rng(1).integers(0, 256, (250, 250, 3), dtype=np.uint8)),
                     quality=100)
    assert 60_000 < len(big) < 150_000
    assert_error(limited_client.post("/predict", files=image_parts(("big.jpg", big))), 413, "image_too_large",
                  "MAX_IMAGE_BYTES")


def test_too_many_pixels_is_413(limited_client: TestClient) -> None:
    wide = jpeg_bytes(Image.new("RGB", (1000, 200), (9, 9, 9)))  # 200k pixels > 100k, few bytes
    assert_error(limited_client.post("/predict", files=image_parts(("wide.jpg", wide))), 413, "image_too_large",
                  "MAX_IMAGE_PIXELS")


def test_request_body_over_the_limit_is_413_before_parsing(limited_client: TestClient) -> None:
    response = limited_client.post("/predict", files=image_parts(("a.jpg", b"\xff" * 200_000)))
    assert_error(response, 413, "request_too_large", "MAX_REQUEST_BYTES")


def test_streamed_body_over_the_limit_is_413(limited_client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"x" * 10_000

    response = limited_client.post("/predict", content=chunks(),
                                   headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert_error(response, 413, "request_too_large")


def test_text_file_is_415(client: TestClient) -> None:
    response = client.post("/predict", files=[("files", ("notes.jpg", b"just some text\n" * 20, "image/jpeg"))])
    assert_error(response, 415, "unsupported_image", "notes.jpg")


def test_non_image_part_type_is_415(client: TestClient) -> None:
    response = client.post("/predict", files=[("files", ("notes.txt", b"text", "text/plain"))])
    assert_error(response, 415, "unsupported_media_type", "text/plain")


def test_json_body_is_415(client: TestClient) -> None:
    assert_error(client.post("/predict", json={"image": "..."}), 415, "unsupported_media_type", "multipart")


def test_corrupt_image_is_400(client: TestClient, val_jpegs: list[tuple[str, bytes]]) -> None:
    name, data = val_jpegs[0]
    assert_error(client.post("/predict", files=image_parts((name, data[: len(data) // 2]))), 400, "invalid_image", name)


def test_one_bad_image_fails_the_whole_request(client: TestClient, val_jpegs: list[tuple[str, bytes]]) -> None:
    response = client.post("/predict", files=image_parts(val_jpegs[0], ("empty.jpg", b"")))
    assert_error(response, 400, "invalid_image", "empty.jpg")


@pytest.mark.parametrize(("data", "fragment"), [
    ({"top_k": "0"}, "top_k"),
    ({"top_k": "many"}, "top_k"),
    ({"threshold": "1.5"}, "threshold"),
    ({"attention": "perhaps"}, "attention"),
])
def test_bad_parameters_are_422(client: TestClient, val_jpegs: list[tuple[str, bytes]], data: dict[str, str],
                                fragment: str) -> None:
    assert_error(client.post("/predict", files=image_parts(val_jpegs[0]), data=data), 422, "validation_error", fragment)


def test_missing_files_is_422(client: TestClient) -> None:
    response = client.post("/predict", files=[("other", ("a.jpg", b"x", "image/jpeg"))])
    assert_error(response, 422, "validation_error", "files")


def test_past_the_deadline_is_504(model_repository: Path, val_jpegs: list[tuple[str, bytes]]) -> None:
    settings = Settings(model_repository=model_repository, request_timeout_s=1e-9)
    with TestClient(create_app(settings)) as impatient:
        response = impatient.post("/predict", files=image_parts(val_jpegs[0]))
    assert_error(response, 504, "deadline_exceeded", "REQUEST_TIMEOUT_S")


def test_unknown_version_is_404_and_a_served_one_answers(client: TestClient,
                                                         val_jpegs: list[tuple[str, bytes]]) -> None:
    response = client.post("/predict", files=image_parts(val_jpegs[0]), data={"version": "9"})
    assert_error(response, 404, "model_not_found", "no served version 9")
    served = client.post("/predict", files=image_parts(val_jpegs[0]), data={"version": "1"})
    assert served.status_code == 200 and served.json()["version"] == 1


def test_openapi_shows_examples_of_the_answer_and_of_every_error(client: TestClient) -> None:
    """Each error example on /predict is valid, and its code is one the service really answers with that status."""
    status_of = {cls.code: status_code_for(cls("x")) for cls in _service_errors()} | {"validation_error": 422}
    schema = client.get("/openapi.json").json()
    responses = schema["paths"]["/predict"]["post"]["responses"]
    assert schema["components"]["schemas"]["PredictResponse"]["examples"]
    PredictResponse.model_validate(schema["components"]["schemas"]["PredictResponse"]["examples"][0])
    for status in ("400", "401", "404", "413", "415", "422", "500", "503", "504"):
        examples = responses[status]["content"]["application/json"]["examples"]
        assert examples, status
        for example in examples.values():
            body = ErrorBody.model_validate(example["value"])
            assert status_of[body.code] == int(status), (status, body.code)


def _service_errors() -> list[type[ServiceError]]:
    found, pending = [], [ServiceError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if "code" in vars(cls):
            found.append(cls)
    return found

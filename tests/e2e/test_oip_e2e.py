"""Open Inference Protocol v2 against a real server, driven by the real `tritonclient[http]` package: health,
metadata, and infer with encoded images (BYTES, binary extension) and preprocessed tensors (FP32, JSON), with
answers equal to `/predict`'s; malformed bodies get 400 JSON errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from e2e_support import predict_probabilities
from PIL import Image, ImageOps
from tritonclient.utils import InferenceServerException

from bench.repositories import copy_version
from labelserve.bundle import Bundle
from labelserve.preprocess import preprocess
from labelserve_tools.local_server import ServerProcess, start_server

pytestmark = pytest.mark.e2e

Images = list[tuple[str, bytes]]


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=60)


def test_health_and_metadata(client: triton.InferenceServerClient, tiny_bundle: Bundle) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("tiny") and client.is_model_ready("tiny", "1")
    assert not client.is_model_ready("tiny", "9") and not client.is_model_ready("missing")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    metadata = client.get_model_metadata("tiny")
    assert metadata["versions"] == ["1"]
    assert metadata["platform"] == "onnxruntime_onnx"
    assert {i["name"]: i["datatype"] for i in metadata["inputs"]} == {"images": "FP32", "image_bytes": "BYTES"}
    outputs = {o["name"]: o["shape"] for o in metadata["outputs"]}
    classes = len(tiny_bundle.manifest.labels)
    assert outputs["probabilities"] == outputs["logits"] == [-1, classes]
    assert outputs["attention"][:2] == [-1, classes]


def test_encoded_images_as_binary_bytes_equal_predict(client: triton.InferenceServerClient, server: ServerProcess,
                                                      val_jpegs: Images, photo_jpegs: Images,
                                                      tiny_bundle: Bundle) -> None:
    images = val_jpegs[:3] + photo_jpegs
    tensor = triton.InferInput("image_bytes", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array([data for _, data in images], dtype=np.object_), binary_data=True)
    outputs = [triton.InferRequestedOutput("probabilities", binary_data=True),
               triton.InferRequestedOutput("attention", binary_data=True)]
    result = client.infer("tiny", [tensor], outputs=outputs, request_id="req-7")
    probabilities = result.as_numpy("probabilities")
    expected = predict_probabilities(server, images, tiny_bundle.manifest.labels)
    assert probabilities.shape == expected.shape
    assert np.abs(probabilities - expected).max() <= 1e-5
    attention = result.as_numpy("attention")
    assert attention.shape[:2] == (len(images), len(tiny_bundle.manifest.labels))
    assert result.get_response()["id"] == "req-7"


def test_preprocessed_tensor_as_json_equals_predict(client: triton.InferenceServerClient, server: ServerProcess,
                                                    val_jpegs: Images, tiny_bundle: Bundle) -> None:
    images = val_jpegs[3:6]
    arrays = []
    for _, data in images:
        with Image.open(io.BytesIO(data)) as image:
            arrays.append(preprocess(ImageOps.exif_transpose(image).convert("RGB"), tiny_bundle.manifest.input))
    batch = np.stack(arrays)
    tensor = triton.InferInput("images", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=False)
    result = client.infer("tiny", [tensor], model_version="1",
                          outputs=[triton.InferRequestedOutput("probabilities", binary_data=False),
                                   triton.InferRequestedOutput("logits", binary_data=False)])
    expected = predict_probabilities(server, images, tiny_bundle.manifest.labels)
    assert np.abs(result.as_numpy("probabilities") - expected).max() <= 1e-5
    assert result.as_numpy("logits").shape == expected.shape


def test_unknown_model_is_an_error_tritonclient_reports(client: triton.InferenceServerClient,
                                                        val_jpegs: Images) -> None:
    tensor = triton.InferInput("image_bytes", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([val_jpegs[0][1]], dtype=np.object_))
    with pytest.raises(InferenceServerException, match="unknown model 'missing'"):
        client.infer("missing", [tensor])


def _post_infer(server: ServerProcess, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/models/tiny/infer", content=body, headers=headers or {}, timeout=30)


def _fp32(values: list[bytes]) -> bytes:
    """An FP32 input of shape [1, N] with `values` spliced in as raw JSON text (json.dumps would refuse some)."""
    return (b'{"inputs": [{"name": "images", "shape": [1, %d], "datatype": "FP32", "data": [' % len(values)
            + b", ".join(values) + b"]}]}")


@pytest.mark.parametrize(("body", "header_length", "fragment"), [
    (b"{not json", None, "not valid JSON"),
    (json.dumps({"inputs": []}).encode(), None, "inputs"),
    (json.dumps({"inputs": [{"name": "images", "shape": [1, 3], "datatype": "INT8", "data": [1, 2, 3]}]}).encode(),
     None, "datatype INT8"),
    (json.dumps({"inputs": [{"name": "images", "shape": [2, 2], "datatype": "FP32", "data": [1.0]}]}).encode(),
     None, "needs 4 values"),
    (json.dumps({"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                             "parameters": {"binary_data_size": 10}}]}).encode() + b"\x05\x00\x00\x00ab",
     "header", "does not fit"),
    (json.dumps({"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                             "parameters": {"binary_data_size": 6}}]}).encode() + b"\x02\x00\x00\x00ab" + b"extra",
     "header", "add up to"),
    (b"{}", "999", "Inference-Header-Content-Length is 999"),
    (json.dumps({"inputs": [{"name": "images", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}]}).encode(),
     None, "must have shape"),
    (json.dumps({"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": ["bm90IGFuIGltYWdl"]}]})
     .encode(), None, "not an image"),
    # each of these reached an unhandled exception (500) before it was caught
    (b"[" * 100_000 + b"]" * 100_000, None, "depth limit exceeded"),  # deeper than the JSON decoder goes
    (_fp32([b"[" * 500 + b"]" * 500]), None, "nested deeper than the 2 dimensions"),
    (_fp32([str(10**400).encode()]), None, "number is infinity"),  # was an OverflowError in np.asarray
    (_fp32([b"1e39"]), None, "within float32's range"),  # would run the network on infinity
    (_fp32([b"NaN"]), None, "not valid JSON"),  # NaN is not JSON; it was answered with NaN
    (_fp32([b'"1.0"']), None, "must be numbers"),  # strings were silently converted
    (json.dumps({"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [5]}]}).encode(), None,
     "base64 strings"),
    (json.dumps({"inputs": [{"name": "images", "shape": [0, 2**31 - 1, 2**31 - 1, 2**31 - 1], "datatype": "FP32",
                             "data": []}]}).encode(), None, "cannot have shape"),  # ndarray size limit
    (json.dumps({"inputs": [{"name": "images", "shape": [10**30], "datatype": "FP32", "data": [1.0]}]}).encode(),
     None, "inputs.0.shape.0"),  # past int64: refused by the request model
    (json.dumps({"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                             "parameters": {"binary_data_size": True}}]}).encode(), None, "binary_data_size True"),
])
def test_malformed_infer_bodies_are_400_with_a_json_error(server: ServerProcess, body: bytes,
                                                          header_length: str | None, fragment: str) -> None:
    headers = {}
    if header_length == "header":
        headers["Inference-Header-Content-Length"] = str(body.index(b"}}]}") + 4)
    elif header_length is not None:
        headers["Inference-Header-Content-Length"] = header_length
    response = _post_infer(server, body, headers)
    assert response.status_code in (400, 415), response.text
    assert fragment in response.json()["error"]


def _bytes_input(count: int) -> dict:
    return {"name": "image_bytes", "shape": [count], "datatype": "BYTES", "data": ["aGVsbG8="] * count}


@pytest.mark.parametrize(("document", "status", "fragment"), [
    ({"inputs": [_bytes_input(1), _bytes_input(1)]}, 400, "exactly one input"),
    ({"inputs": [_bytes_input(1)], "outputs": [{"name": "embeddings"}]}, 400, "unknown output 'embeddings'"),
    ({"inputs": [_bytes_input(33)]}, 413, "over the limit of 32"),
    # bool("false") is True: these were answered in binary
    ({"inputs": [_bytes_input(1)], "parameters": {"binary_data_output": "false"}}, 400,
     "parameters.binary_data_output must be true or false"),
    ({"inputs": [_bytes_input(1)], "outputs": [{"name": "logits", "parameters": {"binary_data": "no"}}]}, 400,
     "output 'logits': parameters.binary_data must be true or false"),
    ({"inputs": [_bytes_input(1)], "parameters": {"binary_data_output": 1}}, 400, "a JSON boolean"),
])
def test_requests_the_model_cannot_honour_get_json_errors(server: ServerProcess, document: dict, status: int,
                                                          fragment: str) -> None:
    response = _post_infer(server, json.dumps(document).encode())
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]


def test_an_empty_batch_keeps_the_label_axis(server: ServerProcess, tiny_bundle: Bundle) -> None:
    labels = len(tiny_bundle.manifest.labels)
    document = {"inputs": [_bytes_input(0)], "outputs": [{"name": "probabilities"}, {"name": "logits"},
                                                         {"name": "attention"}],
                "parameters": {"binary_data_output": False}}
    response = _post_infer(server, json.dumps(document).encode())
    assert response.status_code == 200, response.text
    shapes = {output["name"]: output["shape"] for output in response.json()["outputs"]}
    attention = tiny_bundle.manifest.outputs.attention
    assert shapes == {"probabilities": [0, labels], "logits": [0, labels], "attention": [0, *attention.shape[1:]]}


def test_a_version_that_is_not_a_number_is_400_and_an_absent_one_404(server: ServerProcess) -> None:
    for version in ("latest", "0", "²", "١", "9" * 5000):  # '²'.isdigit() and 5000 digits broke int(): 500
        bad = httpx.get(f"{server.url}/v2/models/tiny/versions/{version}", timeout=10)
        assert bad.status_code == 400 and "positive integer" in bad.json()["error"], (version, bad.text)
    absent = httpx.get(f"{server.url}/v2/models/tiny/versions/7", timeout=10)
    assert absent.status_code == 404 and "no served version 7" in absent.json()["error"]


def test_repository_index_lists_every_version_with_its_state(model_repository: Path, tmp_path: Path) -> None:
    """Triton's repository extension, read-only: a served version is READY, a broken one UNAVAILABLE with the reason
    it was refused; tritonclient reads it."""
    root = tmp_path / "repository"
    copy_version(model_repository / "tiny" / "1", root, 1)
    broken = copy_version(model_repository / "tiny" / "1", root, 2)
    (broken / "model.onnx").write_bytes(b"not a network")
    with start_server(root, tmp_path, api_key="s3cret", repository_poll_s="0") as server:
        client = triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=60)
        index = client.get_model_repository_index(headers={"X-API-Key": "s3cret"})
        assert index[0] == {"name": "tiny", "version": "1", "state": "READY"}
        assert index[1]["name"] == "tiny" and index[1]["version"] == "2" and index[1]["state"] == "UNAVAILABLE"
        assert index[1]["reason"].startswith("refused:") and "sha256" in index[1]["reason"], index[1]
        ready_only = httpx.post(f"{server.url}/v2/repository/index", json={"ready": True},
                                headers={"X-API-Key": "s3cret"}, timeout=10)
        assert ready_only.json() == [index[0]]
        with pytest.raises(InferenceServerException, match="API key"):
            client.get_model_repository_index()
        server.stop()

"""The Open Inference Protocol over gRPC against a real server, driven by the real `tritonclient[grpc]`: health,
metadata, readiness, repository index, statistics and infer (raw and typed contents), with answers equal to
`/predict`'s; the API key, errors as Triton's status codes, and the same metrics and access log as HTTP (deadlines and
the compute gate shared with HTTP: tests/service/test_oip_grpc.py).

The test process imports tritonclient's generated messages, which define the same protobuf names as the server's
(service/oip_grpc/_generated), so the server's modules are never imported here: every call crosses a real socket.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from e2e_support import predict_probabilities
from PIL import Image, ImageOps
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from labelserve.bundle import Bundle
from labelserve.preprocess import preprocess
from labelserve_tools.local_server import ServerProcess, start_server

pytestmark = pytest.mark.e2e

Images = list[tuple[str, bytes]]
KEY = "grpc-s3cret"


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.grpc_target)


def _bytes_input(images: Images) -> triton.InferInput:
    tensor = triton.InferInput("image_bytes", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array([data for _, data in images], dtype=np.object_))
    return tensor


def test_health_metadata_and_repository_index(client: triton.InferenceServerClient, tiny_bundle: Bundle) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("tiny") and client.is_model_ready("tiny", "1")
    assert not client.is_model_ready("tiny", "9") and not client.is_model_ready("missing")
    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "labelserve" and "statistics" in server["extensions"]
    metadata = client.get_model_metadata("tiny", as_json=True)
    assert metadata["versions"] == ["1"] and metadata["platform"] == "onnxruntime_onnx"
    assert {i["name"]: i["datatype"] for i in metadata["inputs"]} == {"images": "FP32", "image_bytes": "BYTES"}
    classes = str(len(tiny_bundle.manifest.labels))
    outputs = {o["name"]: o["shape"] for o in metadata["outputs"]}
    assert outputs["probabilities"] == outputs["logits"] == ["-1", classes]
    index = client.get_model_repository_index(as_json=True)["models"]
    assert {"name": "tiny", "version": "1", "state": "READY"} in index


def test_encoded_images_equal_predict_and_are_counted_in_statistics(
        client: triton.InferenceServerClient, server: ServerProcess, val_jpegs: Images, photo_jpegs: Images,
        tiny_bundle: Bundle) -> None:
    before = client.get_inference_statistics("tiny", as_json=True)["model_stats"][0].get("inference_count", "0")
    images = val_jpegs[:3] + photo_jpegs
    result = client.infer("tiny", [_bytes_input(images)], request_id="grpc-req-1",
                          outputs=[triton.InferRequestedOutput("probabilities"),
                                   triton.InferRequestedOutput("attention")])
    expected = predict_probabilities(server, images, tiny_bundle.manifest.labels)
    assert np.abs(result.as_numpy("probabilities") - expected).max() <= 1e-6
    assert result.as_numpy("attention").shape[:2] == (len(images), len(tiny_bundle.manifest.labels))
    response = result.get_response()
    assert response.id == "grpc-req-1" and response.model_version == "1"
    ids = response.parameters["prediction_ids"].string_param.split(",")
    assert ids == [f"grpc-req-1/{i}" for i in range(len(images))]  # answers that can take feedback
    after = client.get_inference_statistics("tiny", as_json=True)["model_stats"][0]["inference_count"]
    assert int(after) - int(before) == 2 * len(images)  # the gRPC images and the same through /predict


def test_typed_contents_and_fp32_tensors_equal_predict(server: ServerProcess, val_jpegs: Images,
                                                       tiny_bundle: Bundle) -> None:
    """Inputs in `contents` (bytes_contents, fp32_contents) rather than raw: what hand-written clients send."""
    images = val_jpegs[3:5]
    expected = predict_probabilities(server, images, tiny_bundle.manifest.labels)
    arrays = []
    for _, data in images:
        with Image.open(io.BytesIO(data)) as image:
            arrays.append(preprocess(ImageOps.exif_transpose(image).convert("RGB"), tiny_bundle.manifest.input))
    batch = np.stack(arrays)
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        encoded = service_pb2.ModelInferRequest(model_name="tiny")
        encoded.inputs.add(name="image_bytes", datatype="BYTES", shape=[len(images)]).contents.bytes_contents.extend(
            [data for _, data in images])
        tensors = service_pb2.ModelInferRequest(model_name="tiny", model_version="1")
        tensors.inputs.add(name="images", datatype="FP32", shape=list(batch.shape)).contents.fp32_contents.extend(
            batch.ravel().tolist())
        for request in (encoded, tensors):
            response = stub.ModelInfer(request, timeout=60)
            names = [output.name for output in response.outputs]
            probabilities = np.frombuffer(response.raw_output_contents[names.index("probabilities")], "<f4")
            assert np.abs(probabilities.reshape(expected.shape) - expected).max() <= 1e-5


@pytest.mark.parametrize(("build", "fragment"), [
    (lambda r: r.inputs.add(name="image_bytes", datatype="BYTES", shape=[2]).contents.bytes_contents.append(b"x"),
     "needs 2 values"),
    (lambda r: r.inputs.add(name="images", datatype="FP32", shape=[1, 3]).contents.fp32_contents.extend([1, 2, 3]),
     "must have shape"),
    (lambda r: r.inputs.add(name="image_bytes", datatype="INT8", shape=[1]), "datatype INT8"),
    (lambda r: r.inputs.add(name="image_bytes", datatype="BYTES", shape=[1]).contents.bytes_contents.append(
        b"not an image"), "not an image"),
    (lambda r: (r.inputs.add(name="image_bytes", datatype="BYTES", shape=[1]), r.raw_input_contents.extend(
        [b"\x09\x00\x00\x00ab"])), "claims 9 bytes"),
    (lambda r: r.inputs.add(name="images", datatype="FP32", shape=[1]).contents.fp32_contents.append(float("nan")),
     "no NaN"),
    (lambda r: (r.inputs.add(name="image_bytes", datatype="BYTES", shape=[0]),
                setattr(r.parameters["binary_data_output"], "string_param", "false")), "must be true or false"),
    (lambda r: None, "no inputs"),
])
def test_malformed_requests_are_invalid_argument(server: ServerProcess, build: object, fragment: str) -> None:
    request = service_pb2.ModelInferRequest(model_name="tiny")
    build(request)  # type: ignore[operator]
    with grpc.insecure_channel(server.grpc_target) as channel, pytest.raises(grpc.RpcError) as failure:
        service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT, failure.value.details()
    assert fragment in failure.value.details()
    assert client_answers(server)


def client_answers(server: ServerProcess) -> bool:
    """The server still answers after a bad request."""
    return triton.InferenceServerClient(server.grpc_target).is_server_live()


def test_errors_are_tritons_status_codes_and_metrics_count_them_like_http(
        client: triton.InferenceServerClient, server: ServerProcess, val_jpegs: Images) -> None:
    with pytest.raises(InferenceServerException, match="unknown model 'missing'") as failure:
        client.infer("missing", [_bytes_input(val_jpegs[:1])])
    assert failure.value.status() == "StatusCode.NOT_FOUND"
    route = "/inference.GRPCInferenceService/ModelInfer"
    assert server.metric("labelserve_requests_total", method="GRPC", route=route, status="404") >= 1
    assert server.metric("labelserve_requests_total", method="GRPC", route=route, status="200") >= 1
    assert server.metric("labelserve_errors_total", route=route, code="model_not_found") >= 1
    lines = [r for r in server.log_records() if r.get("route") == route and r.get("grpc_status") == "NOT_FOUND"]
    assert lines and lines[-1]["status"] == 404 and lines[-1]["request_id"]


@pytest.fixture(scope="module")
def guarded_server(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with an API key."""
    with start_server(model_repository, tmp_path_factory.mktemp("grpc-guarded"), api_key=KEY) as server:
        yield server
        server.stop()


def test_the_api_key_comes_in_metadata_and_health_stays_open(guarded_server: ServerProcess,
                                                             val_jpegs: Images) -> None:
    client = triton.InferenceServerClient(guarded_server.grpc_target)
    assert client.is_server_live() and client.is_server_ready()
    for headers in ({}, {"x-api-key": "wrong"}, {"authorization": "Bearer wrong"}):
        with pytest.raises(InferenceServerException) as failure:
            client.infer("tiny", [_bytes_input(val_jpegs[:1])], headers=headers)
        assert failure.value.status() == "StatusCode.UNAUTHENTICATED", headers
    with pytest.raises(InferenceServerException, match="API key"):
        client.get_model_metadata("tiny", headers={})
    for headers in ({"x-api-key": KEY}, {"authorization": f"Bearer {KEY}"}):
        assert client.get_model_metadata("tiny", headers=headers, as_json=True)["name"] == "tiny"


def test_workers_share_one_grpc_port(model_repository: Path, tmp_path: Path, val_jpegs: Images) -> None:
    """With several workers, gRPC port 0 is chosen once by the supervisor and every worker binds it."""
    with start_server(model_repository, tmp_path, workers="2") as server:
        ports = re.findall(r"GRPCInferenceService\) running on [0-9.]+:(\d+)", server.log())
        assert len(ports) == 2 and len(set(ports)) == 1, ports
        client = triton.InferenceServerClient(server.grpc_target)
        for _ in range(8):
            assert client.infer("tiny", [_bytes_input(val_jpegs[:1])]).as_numpy("probabilities").shape[0] == 1
        server.stop()


def test_labelserve_serve_takes_the_grpc_port_or_none(model_repository: Path, tmp_path: Path) -> None:
    (tmp_path / "on").mkdir()
    (tmp_path / "off").mkdir()
    with start_server(model_repository, tmp_path / "on", entry="cli", arguments=["--grpc-port", "0"]) as server:
        assert triton.InferenceServerClient(server.grpc_target).is_server_ready()
        server.stop()
    with start_server(model_repository, tmp_path / "off", entry="cli", arguments=["--no-grpc"]) as server:
        assert "GRPCInferenceService" not in server.log()
        server.stop()

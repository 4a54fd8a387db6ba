"""OIP over gRPC inside one app: a gRPC deadline bounds the request like `timeout_s` does over HTTP (the image is
dropped from its batch), gRPC and HTTP take slots of the same compute gate, and the generated code is what the
vendored protos generate. Calls cross the app's real gRPC socket; HTTP goes through the app's middleware."""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from service_testing import image_parts
from starlette.testclient import TestClient

from service.app import create_app
from service.oip_grpc._generated import grpc_service_pb2 as pb
from service.oip_grpc._generated import grpc_service_pb2_grpc as pb_grpc
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
Images = list[tuple[str, bytes]]


def _infer_request(jpeg: bytes) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="tiny")
    request.inputs.add(name="image_bytes", datatype="BYTES", shape=[1]).contents.bytes_contents.append(jpeg)
    return request


@contextlib.contextmanager
def _app(model_repository: Path, **settings: object) -> Iterator[tuple[TestClient, pb_grpc.GRPCInferenceServiceStub]]:
    """The app with its lifespan running, and a stub on its gRPC port."""
    with TestClient(create_app(Settings(model_repository=model_repository, grpc_port=0, **settings))) as client:
        port = client.app.state.labelserve.grpc_port
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield client, pb_grpc.GRPCInferenceServiceStub(channel)


def _images_computed(client: TestClient) -> float:
    return client.app.state.labelserve.metrics.registry.get_sample_value(
        "labelserve_images_total", {"model": "tiny", "version": "1"}) or 0.0


def test_a_grpc_deadline_is_the_requests_deadline_and_its_image_is_never_computed(model_repository: Path,
                                                                                  val_jpegs: Images) -> None:
    # as in the HTTP deadline test: a 1 s batching window and another image announced, so this image is still queued
    # when the call's 0.3 s deadline passes
    with _app(model_repository, max_queue_delay_ms=1000) as (client, stub):
        batcher = client.app.state.labelserve.repository.get("tiny").batcher
        announcement = contextlib.ExitStack()
        client.portal.call(announcement.enter_context, batcher.incoming())
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as failure:
            stub.ModelInfer(_infer_request(val_jpegs[0][1]), timeout=0.3)
        assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 1.0
        client.portal.call(announcement.close)
        time.sleep(1.2)  # past the batch window: a computed image would be counted by now
        assert _images_computed(client) == 0
        assert len(stub.ModelInfer(_infer_request(val_jpegs[0][1]), timeout=30).outputs) == 2  # no deadline: served


def test_grpc_and_http_share_the_compute_gate(model_repository: Path, val_jpegs: Images) -> None:
    """One compute slot: an HTTP prediction held in its batch leaves none for a gRPC infer (UNAVAILABLE, counted as
    an admission refusal), and the other way round."""
    with _app(model_repository, max_in_flight=1, admission_wait_s=0, max_queue_delay_ms=2000) as (client, stub):
        state = client.app.state.labelserve
        batcher = state.repository.get("tiny").batcher
        announcement = contextlib.ExitStack()
        client.portal.call(announcement.enter_context, batcher.incoming())  # holds the next batch up to 2 s
        held = threading.Thread(target=lambda: client.post("/predict", files=image_parts(val_jpegs[0])))
        held.start()
        while state.gate.in_flight == 0:
            time.sleep(0.01)
        with pytest.raises(grpc.RpcError) as failure:
            stub.ModelInfer(_infer_request(val_jpegs[1][1]), timeout=30)
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "LABELSERVE_MAX_IN_FLIGHT" in (failure.value.details() or "")
        client.portal.call(announcement.close)
        held.join()

        client.portal.call(announcement.enter_context, batcher.incoming())
        answers: list[pb.ModelInferResponse] = []
        held = threading.Thread(target=lambda: answers.append(stub.ModelInfer(_infer_request(val_jpegs[2][1]),
                                                                              timeout=30)))
        held.start()
        while state.gate.in_flight == 0:
            time.sleep(0.01)
        refused = client.post("/predict", files=image_parts(val_jpegs[3]))
        assert refused.status_code == 503 and refused.json()["code"] == "server_busy"
        client.portal.call(announcement.close)
        held.join()
        assert answers and answers[0].outputs[0].shape == [1, len(state.repository.get("tiny").manifest.labels)]
        assert state.metrics.registry.get_sample_value("labelserve_admission_rejections_total") == 2


def test_the_vendored_protos_are_the_recorded_ones_and_the_generated_code_is_current(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (the dev extra) generates the code")
    from scripts.generate_grpc import GENERATED, OUT_DIR, PROTO_DIR, generate

    recorded = dict(re.findall(r"\| (\S+\.proto) \| \S+ \| ([0-9a-f]{64}) \|",
                               (PROTO_DIR / "SOURCE.md").read_text(encoding="utf-8")))
    assert set(recorded) == {"grpc_service.proto", "model_config.proto"}
    for name, digest in recorded.items():
        assert hashlib.sha256((PROTO_DIR / name).read_bytes()).hexdigest() == digest, name
    generate(tmp_path)
    for name in GENERATED:
        assert (tmp_path / name).read_text(encoding="utf-8") == (OUT_DIR / name).read_text(encoding="utf-8"), (
            f"{name} is stale: run make grpc")


def test_an_answers_id_is_the_calls_request_id_as_over_http(model_repository: Path, val_jpegs: Images) -> None:
    with _app(model_repository) as (_, stub):
        response, call = stub.ModelInfer.with_call(_infer_request(val_jpegs[0][1]), timeout=30)
        request_id = dict(call.trailing_metadata())["x-request-id"]
        assert response.parameters["prediction_ids"].string_param == request_id  # the id the access log names
        response, _ = stub.ModelInfer.with_call(_infer_request(val_jpegs[0][1]), timeout=30,
                                                metadata=(("x-request-id", "mine-1"),))
        assert response.parameters["prediction_ids"].string_param == "mine-1"

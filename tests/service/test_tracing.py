"""OpenTelemetry traces with the SDK's in-memory exporter: a request's spans are children of the client's
`traceparent` (HTTP header, gRPC metadata), which comes back naming the request's span; every phase has its span under
it; one span per engine batch, linked to every request in it; nothing at all when tracing is off."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from service_testing import image_parts
from starlette.testclient import TestClient

from service import tracing
from service.app import create_app
from service.oip_grpc._generated import grpc_service_pb2 as pb
from service.oip_grpc._generated import grpc_service_pb2_grpc as pb_grpc
from service.settings import Settings

Images = list[tuple[str, bytes]]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    tracing.enable(provider)
    yield exported
    tracing.disable()


@pytest.fixture(scope="module")
def app(model_repository: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(model_repository=model_repository, grpc_port=0))) as client:
        yield client


def _by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    named: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        named.setdefault(span.name, []).append(span)
    return named


def _check_request_trace(spans: tuple[ReadableSpan, ...], server_name: str, images: int) -> ReadableSpan:
    """The server span is the client's child; every phase is the server span's child; the batch links to it."""
    named = _by_name(spans)
    (server,) = named[server_name]
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.parent is not None and format(server.parent.span_id, "016x") == PARENT_ID
    for phase, count in (("decode", images), ("queue wait", images), ("encode", 1)):
        assert len(named[phase]) == count, phase
        for child in named[phase]:
            assert child.parent is not None and child.parent.span_id == server.context.span_id, phase
            assert child.context.trace_id == server.context.trace_id
    batches = named["engine batch"]
    assert batches and all(batch.parent is None for batch in batches)  # a batch is no request's child
    linked = [link.context.span_id for batch in batches for link in batch.links]
    assert linked.count(server.context.span_id) == images  # one link per image of the request
    assert sum(batch.attributes["labelserve.batch_size"] for batch in batches) >= images
    return server


def test_an_http_request_is_traced_from_the_clients_traceparent(app: TestClient, val_jpegs: Images,
                                                                exporter: InMemorySpanExporter) -> None:
    response = app.post("/predict", files=image_parts(*val_jpegs[:2]), headers={"traceparent": TRACEPARENT})
    assert response.status_code == 200
    spans = exporter.get_finished_spans()
    server = _check_request_trace(spans, "POST /predict", images=2)
    assert response.headers["traceparent"] == f"00-{TRACE_ID}-{format(server.context.span_id, '016x')}-01"
    named = _by_name(spans)
    for phase in ("admission wait", "body read"):
        assert named[phase][0].parent.span_id == server.context.span_id, phase
    assert server.attributes["http.response.status_code"] == 200


def test_a_grpc_call_is_traced_from_the_traceparent_in_its_metadata(app: TestClient, val_jpegs: Images,
                                                                    exporter: InMemorySpanExporter) -> None:
    request = pb.ModelInferRequest(model_name="tiny")
    request.inputs.add(name="image_bytes", datatype="BYTES", shape=[1]).contents.bytes_contents.append(
        val_jpegs[0][1])
    with grpc.insecure_channel(f"127.0.0.1:{app.app.state.labelserve.grpc_port}") as channel:
        _, call = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer.with_call(
            request, metadata=(("traceparent", TRACEPARENT),), timeout=30)
    server = _check_request_trace(exporter.get_finished_spans(), "GRPC ModelInfer", images=1)
    trailing = dict(call.trailing_metadata())
    assert trailing["traceparent"] == f"00-{TRACE_ID}-{format(server.context.span_id, '016x')}-01"


def test_a_request_without_traceparent_starts_a_trace_of_its_own(app: TestClient, val_jpegs: Images,
                                                                  exporter: InMemorySpanExporter) -> None:
    response = app.post("/predict", files=image_parts(val_jpegs[0]))
    (server,) = _by_name(exporter.get_finished_spans())["POST /predict"]
    assert server.parent is None
    assert response.headers["traceparent"].split("-")[1] == format(server.context.trace_id, "032x")


def test_off_by_default_nothing_is_recorded_or_sent(app: TestClient, val_jpegs: Images) -> None:
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    tracing.enable(provider)
    tracing.disable()
    response = app.post("/predict", files=image_parts(val_jpegs[0]), headers={"traceparent": TRACEPARENT})
    assert response.status_code == 200 and "traceparent" not in response.headers
    assert exported.get_finished_spans() == ()
    assert not Settings().tracing

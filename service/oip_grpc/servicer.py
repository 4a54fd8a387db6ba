"""`GRPCInferenceService` on the service's state: health, metadata, readiness, infer, repository index, statistics.

Every call passes `_rpc` first, the gRPC side of what the HTTP middleware does for every request: a request id
(the client's `x-request-id` metadata, or a new one; sent back as trailing metadata), the API key (`x-api-key` or
`authorization: Bearer` metadata) on everything but health and server metadata, one access log line and the same
`labelserve_requests_total` / `labelserve_errors_total` series (method `GRPC`, the status the HTTP adapter would give
the same error), and service errors turned into gRPC statuses as Triton maps them. Infer takes a slot of the same
compute gate as HTTP and runs through the same OIP core (service.oip.inference), bounded by the client's gRPC
deadline or LABELSERVE_REQUEST_TIMEOUT_S, whichever comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import grpc
from google.protobuf import json_format
from starlette.datastructures import Headers

from service import tracing
from service.errors import (
    ClientDisconnectedError,
    DeadlineExceededError,
    ModelNotFoundError,
    ServiceError,
    status_code_for,
)
from service.observability import bind_request_id, record_request, request_id_or_new, unbind_request_id
from service.oip.inference import Results, infer
from service.oip.metadata import model_document, server_document
from service.oip.versions import parse_version
from service.oip_grpc._generated import grpc_service_pb2 as pb
from service.oip_grpc._generated import grpc_service_pb2_grpc as pb_grpc
from service.oip_grpc.codec import decode_infer, encode_infer
from service.oip_grpc.status import grpc_status
from service.routes._auth import api_key_error
from service.state import ServiceState

__all__ = ["InferenceServicer"]

logger = logging.getLogger(__name__)

Handler = Callable[[Any, Any, grpc.aio.ServicerContext, Headers], Awaitable[Any]]
_SERVICE = "/inference.GRPCInferenceService/"


def _headers(context: grpc.aio.ServicerContext) -> Headers:
    """The call's metadata as HTTP-style headers (lower-case names), so the HTTP checks read it unchanged."""
    raw = [(key.lower().encode("latin-1"), value.encode("latin-1", "replace"))
           for key, value in (context.invocation_metadata() or ()) if isinstance(value, str)]
    return Headers(raw=raw)


def _rpc(authorized: bool = True) -> Callable[[Handler], Callable[..., Coroutine[Any, Any, Any]]]:
    """Request id, API key, metrics, access log and error mapping around one RPC method."""

    def wrap(method: Handler) -> Callable[..., Coroutine[Any, Any, Any]]:
        route = _SERVICE + method.__name__

        @functools.wraps(method)
        async def call(self: InferenceServicer, request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            headers = _headers(context)
            request_id = request_id_or_new(headers.get("x-request-id"))
            token = bind_request_id(request_id)
            status, error_code, grpc_code = 200, None, grpc.StatusCode.OK
            trailing: tuple[tuple[str, str], ...] = (("x-request-id", request_id),)
            traced = contextlib.ExitStack()
            try:
                if tracing.enabled():
                    current = traced.enter_context(tracing.server_span(
                        f"GRPC {method.__name__}", headers, {"rpc.system": "grpc", "rpc.method": method.__name__,
                                                             "labelserve.request_id": request_id}))
                    if (traceparent := tracing.traceparent_of(current)) is not None:
                        trailing += ((tracing.TRACEPARENT, traceparent),)
                if authorized and (denied := api_key_error(headers, self.state.settings)) is not None:
                    raise denied
                response = await method(self, request, context, headers)
                context.set_trailing_metadata(trailing)
                return response
            except ServiceError as error:
                status, error_code, grpc_code = status_code_for(error), error.code, grpc_status(error)
                await context.abort(grpc_code, error.message, trailing_metadata=trailing)
            except asyncio.CancelledError:  # the client cancelled or its deadline passed: its doing, not ours
                status, error_code, grpc_code = 499, ClientDisconnectedError.code, grpc.StatusCode.CANCELLED
                raise
            except Exception as exc:
                if isinstance(exc, grpc.aio.AbortError):
                    raise
                logger.exception("%s failed", route)
                status, error_code, grpc_code = 500, "internal_error", grpc.StatusCode.INTERNAL
                await context.abort(grpc_code, "internal server error; see the server log", trailing_metadata=trailing)
            finally:
                traced.close()
                record_request(self.state.metrics, "GRPC", route, route, status, error_code,
                               time.perf_counter() - started, grpc_status=grpc_code.name)
                unbind_request_id(token)

        return call

    return wrap


def _tensor_metadata(specs: list[dict[str, Any]]) -> list[pb.ModelMetadataResponse.TensorMetadata]:
    return [pb.ModelMetadataResponse.TensorMetadata(name=spec["name"], datatype=spec["datatype"],
                                                    shape=spec["shape"]) for spec in specs]


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The methods labelserve serves; the rest (shared memory, model load/unload, ...) answer UNIMPLEMENTED."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state

    @_rpc(authorized=False)
    async def ServerLive(self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext,  # noqa: N802
                         headers: Headers) -> pb.ServerLiveResponse:
        """The process answers."""
        return pb.ServerLiveResponse(live=True)

    @_rpc(authorized=False)
    async def ServerReady(self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext,  # noqa: N802
                          headers: Headers) -> pb.ServerReadyResponse:
        """Every model is loaded and warm."""
        return pb.ServerReadyResponse(ready=self.state.ready)

    @_rpc(authorized=False)
    async def ServerMetadata(self, request: pb.ServerMetadataRequest,  # noqa: N802
                             context: grpc.aio.ServicerContext, headers: Headers) -> pb.ServerMetadataResponse:
        """Server name, version and protocol extensions."""
        return pb.ServerMetadataResponse(**server_document())

    @_rpc()
    async def ModelReady(self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext,  # noqa: N802
                         headers: Headers) -> pb.ModelReadyResponse:
        """Whether that model (version) is served."""
        try:
            self.state.repository.get(request.name, parse_version(request.version or None))
        except ModelNotFoundError:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    @_rpc()
    async def ModelMetadata(self, request: pb.ModelMetadataRequest,  # noqa: N802
                            context: grpc.aio.ServicerContext, headers: Headers) -> pb.ModelMetadataResponse:
        """Inputs, outputs, versions and platform of a served model."""
        document = model_document(self.state, request.name, parse_version(request.version or None))
        return pb.ModelMetadataResponse(name=document["name"], versions=document["versions"],
                                        platform=document["platform"], inputs=_tensor_metadata(document["inputs"]),
                                        outputs=_tensor_metadata(document["outputs"]))

    @_rpc()
    async def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext,  # noqa: N802
                         headers: Headers) -> pb.ModelInferResponse:
        """Run the model on encoded images or preprocessed tensors, like OIP over HTTP."""
        arrived = time.monotonic()
        settings = self.state.settings
        remaining = context.time_remaining()
        timeout_s = settings.request_timeout_s if remaining is None else min(settings.request_timeout_s, remaining)
        infer_request, tensors = decode_infer(request)
        version = parse_version(request.model_version or None)

        async def guard(work: Coroutine[Any, Any, Results]) -> Results:
            try:  # a timeout scope, not wait_for, which would start a second task for every call
                async with asyncio.timeout(max(0.0, arrived + timeout_s - time.monotonic())):
                    return await work
            except TimeoutError:
                raise DeadlineExceededError(f"the request did not finish within its deadline of {timeout_s:g} s "
                                            "(the call's gRPC deadline, or LABELSERVE_REQUEST_TIMEOUT_S)") from None

        peer = context.peer() or ""
        routing = {"headers": headers.raw, "client": (peer.rsplit(":", 1)[0].removeprefix("ipv4:"), 0)}
        async with self.state.gate.admitted():
            answer = await infer(self.state, request.model_name, version, infer_request, tensors, routing, guard)
        with tracing.span("encode"):
            return encode_infer(answer.model, answer.version, answer.request_id, answer.outputs, answer.ids)

    @_rpc()
    async def ModelStatistics(self, request: pb.ModelStatisticsRequest,  # noqa: N802
                              context: grpc.aio.ServicerContext, headers: Headers) -> pb.ModelStatisticsResponse:
        """Triton's statistics extension: every served version, one model's, or one version's."""
        repository = self.state.repository
        if request.name:
            wanted = parse_version(request.version or None)
            served = ([repository.get(request.name, wanted)] if wanted is not None else
                      [m for m in repository.models() if m.name == request.name])
            if not served:
                raise ModelNotFoundError(f"model {request.name!r} is not served")
        else:
            served = list(repository.models())
        entries = [model.statistics.as_dict(model.name, model.version) for model in served]
        return json_format.ParseDict({"model_stats": entries}, pb.ModelStatisticsResponse(),
                                     ignore_unknown_fields=True)

    @_rpc()
    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest,  # noqa: N802
                              context: grpc.aio.ServicerContext, headers: Headers) -> pb.RepositoryIndexResponse:
        """Every model version in the repository with its state (READY, LOADING, UNAVAILABLE) and why."""
        response = pb.RepositoryIndexResponse()
        for entry in self.state.repository.index():
            if request.ready and entry.state != "READY":
                continue
            response.models.add(name=entry.name, version=str(entry.version), state=entry.state,
                                reason=entry.reason or "")
        return response

"""OpenTelemetry traces of one request through admission, body, decode, queue, engine batch and encode.

Off by default (LABELSERVE_TRACING=false): then every hook here is one check of a module flag, nothing else, so the
request path pays nothing measurable (bench/tracing.py measures it). On, the SDK's tracer provider exports with OTLP
(the `tracing` extra: opentelemetry-exporter-otlp-proto-http), configured by the standard `OTEL_*` variables
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`, ...); tests install their own provider
with an in-memory exporter (`enable`).

Spans: one server span per request (`POST /predict`, `GRPC ModelInfer`), its parent the W3C `traceparent` the client
sent (HTTP header or gRPC metadata) and its own `traceparent` sent back; under it `admission wait`, `body read`,
`decode` (per image), `queue wait` (per image, from submission to its batch's start) and `encode`; and one
`engine batch` span per batch, in a trace of its own and linked to the span of every request in it (a batch serves
many requests, so it can be the child of none).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["TRACEPARENT", "batch_span", "current_context", "disable", "enable", "enabled", "mark_status",
           "record_queue_wait", "server_span", "span", "traceparent_of"]

logger = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
_PROPAGATOR = TraceContextTextMapPropagator()
_TRACER_NAME = "labelserve"
_enabled = False
_tracer: trace.Tracer = trace.NoOpTracer()
_NOTHING = nullcontext()


def enabled() -> bool:
    """Whether requests are traced."""
    return _enabled


def enable(provider: Any | None = None) -> None:
    """Trace from now on, with `provider` (a TracerProvider), or one that exports with OTLP as the `OTEL_*`
    variables say.

    Raises:
        RuntimeError: no provider given and the OTLP exporter (the `tracing` extra) is not installed.
    """
    global _enabled, _tracer
    if provider is None:
        provider = _otlp_provider()
    _tracer = provider.get_tracer(_TRACER_NAME)  # the service's own provider: the global one is left to the host
    _enabled = True


def disable() -> None:
    """Stop tracing."""
    global _enabled
    _enabled = False


def _otlp_provider() -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise RuntimeError("LABELSERVE_TRACING=true needs the OTLP exporter: pip install "
                           "'labelserve[tracing]'") from exc
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "labelserve")})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    logger.info("tracing on: OTLP to %s", os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318"))
    return provider


@contextmanager
def server_span(name: str, carrier: Mapping[str, str], attributes: dict[str, Any]) -> Iterator[Any]:
    """The request's span, child of the client's `traceparent` in `carrier` (headers or metadata), current for the
    block; yields the span (None when tracing is off)."""
    if not _enabled:
        yield None
        return
    parent = _PROPAGATOR.extract(carrier={k: v for k, v in carrier.items() if k == TRACEPARENT or k == "tracestate"})
    with _tracer.start_as_current_span(name, context=parent, kind=SpanKind.SERVER, attributes=attributes) as current:
        yield current


def traceparent_of(current: Any) -> str | None:
    """The `traceparent` value naming `current` (to send back), or None."""
    if current is None:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(current))
    return carrier.get(TRACEPARENT)


def mark_status(current: Any, status: int) -> None:
    """Record the answer's status on the request's span (an error status for the server's 5xx only)."""
    if current is None:
        return
    current.set_attribute("http.response.status_code", status)
    if status >= 500 and status != 504:
        current.set_status(Status(StatusCode.ERROR))


def span(name: str, **attributes: Any) -> AbstractContextManager[Any]:
    """A child span of the current one for the block; when tracing is off, one shared do-nothing context (no
    generator is made: this is on every request's path)."""
    if not _enabled:
        return _NOTHING
    return _tracer.start_as_current_span(name, attributes=attributes)


def current_context() -> SpanContext | None:
    """The current span's context, for a batch to link to (None when tracing is off or no request is traced)."""
    if not _enabled:
        return None
    context = trace.get_current_span().get_span_context()
    return context if context.is_valid else None


def record_queue_wait(parent: SpanContext | None, enqueued_at: float, started_at: float) -> None:
    """A `queue wait` span under the request's span, from the image's submission to its batch's start
    (`time.monotonic()` values, turned into wall-clock nanoseconds)."""
    if parent is None:
        return
    now_ns, now = time.time_ns(), time.monotonic()
    parent_context = trace.set_span_in_context(trace.NonRecordingSpan(parent), otel_context.Context())
    queued = _tracer.start_span("queue wait", context=parent_context,
                                  start_time=now_ns - int((now - enqueued_at) * 1e9))
    queued.end(end_time=now_ns - int((now - started_at) * 1e9))


def batch_span(model: str, size: int, members: list[SpanContext | None]) -> AbstractContextManager[Any]:
    """One `engine batch` span, a root linked to every traced request in the batch (nothing when none is traced)."""
    if not _enabled:
        return _NOTHING
    links = [Link(member) for member in members if member is not None]
    if not links:
        return _NOTHING
    return _tracer.start_as_current_span("engine batch", context=otel_context.Context(), links=links,
                                         attributes={"labelserve.model": model, "labelserve.batch_size": size})

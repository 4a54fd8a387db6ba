"""Prometheus metrics, JSON logs and the request-id / request-metrics middleware.

Metrics live on a per-app `CollectorRegistry`, so several apps in one process (tests) never clash. Names carry the
`labelserve_` prefix and seconds as the unit; per-model series are labelled `model` and `version`. With several
worker processes (`service.workers`), prometheus_client's multiprocess mode keeps every worker's values in files and
the registry exposes all of them, so any worker answers a scrape for the whole server.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import time
import uuid
from datetime import UTC, datetime

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.datastructures import MutableHeaders
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import tracing
from service.errors import ERROR_CODE_HEADER

__all__ = ["REQUEST_ID_HEADER", "JsonFormatter", "Metrics", "ModelObserver", "RequestObservabilityMiddleware",
           "bind_request_id", "configure_logging", "current_request_id", "record_request", "request_id_or_new",
           "unbind_request_id"]

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("labelserve_request_id", default=None)
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_QUEUE_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
_MODEL_LABELS = ("model", "version")
_CLOSE_REASONS = ("idle", "header_timeout", "body_timeout", "send_timeout", "malformed", "header_too_large",
                  "uri_too_long", "evicted", "refused")


def current_request_id() -> str | None:
    """The id of the request being handled in this context, if any."""
    return _REQUEST_ID.get()


def _multiprocess_dir() -> str | None:
    """The folder of prometheus_client's multiprocess mode, when it is on in this process.

    prometheus_client decides where values live from this variable when it is imported; reading the same variable
    keeps what is exposed in step with where the values are written.
    """
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """All of the service's Prometheus series, on one registry.

    In multiprocess mode the series are not registered themselves: the registry holds a collector that reads every
    process's values instead. Counters and histograms are summed over every worker that ever ran (a replaced worker's
    counts stay, so totals never go backwards); in-flight requests and queue depth are per live worker (label `pid`);
    `labelserve_model_info` is 1 while any live worker serves the version; `labelserve_workers` counts live workers.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.multiprocess_dir = _multiprocess_dir()
        reg: CollectorRegistry | None = self.registry
        if self.multiprocess_dir is not None:
            MultiProcessCollector(self.registry, path=self.multiprocess_dir)
            reg = None
        self.requests = Counter("labelserve_requests", "HTTP requests by route and status code",
                                ("method", "route", "status"), registry=reg)
        self.request_latency = Histogram("labelserve_request_duration_seconds", "HTTP request latency",
                                         ("method", "route"), buckets=_LATENCY_BUCKETS_S, registry=reg)
        self.errors = Counter("labelserve_errors", "Error responses by route and error code", ("route", "code"),
                              registry=reg)
        self.in_flight = Gauge("labelserve_requests_in_flight", "HTTP requests being handled right now", ("method",),
                               multiprocess_mode="liveall", registry=reg)
        self.images = Counter("labelserve_images", "Images answered", _MODEL_LABELS, registry=reg)
        self.batch_size = Histogram("labelserve_batch_size", "Images per engine call", _MODEL_LABELS,
                                    buckets=_BATCH_BUCKETS, registry=reg)
        self.queue_wait = Histogram("labelserve_queue_wait_seconds", "Time an image waited for its batch",
                                    _MODEL_LABELS, buckets=_QUEUE_BUCKETS_S, registry=reg)
        self.inference = Histogram("labelserve_inference_duration_seconds", "Engine time per batch",
                                   _MODEL_LABELS, buckets=_LATENCY_BUCKETS_S, registry=reg)
        self.queue_depth = Gauge("labelserve_queue_depth", "Images waiting for a batch", _MODEL_LABELS,
                                 multiprocess_mode="liveall", registry=reg)
        self.rejections = Counter("labelserve_rejections", "Images refused before inference",
                                  (*_MODEL_LABELS, "reason"), registry=reg)
        self.admission_rejections = Counter("labelserve_admission_rejections",
                                            "Inference requests answered 503 at the door, before their body was read "
                                            "(LABELSERVE_MAX_IN_FLIGHT)", registry=reg)
        self.model_info = Gauge("labelserve_model_info", "Models being served (value 1)",
                                (*_MODEL_LABELS, "engine", "provider"), multiprocess_mode="livemax", registry=reg)
        self.model_loads = Counter("labelserve_model_loads", "Model version loads by result (success, failure)",
                                   (*_MODEL_LABELS, "result"), registry=reg)
        self.workers = Gauge("labelserve_workers", "Server processes serving (LABELSERVE_WORKERS)",
                             multiprocess_mode="livesum", registry=reg)
        self.workers.set(1)  # this process; the live workers' values add up
        self.worker_restarts = Counter("labelserve_worker_restarts", "Workers started in place of one that died",
                                       registry=reg)
        self.connections = Gauge("labelserve_connections", "Open client connections by phase (idle, headers, body, "
                                 "answering, closing)", ("phase",), multiprocess_mode="livesum", registry=reg)
        self.connections_closed = Counter("labelserve_connections_closed", "Connections the server closed or "
                                          "refused, by reason (idle, header_timeout, body_timeout, send_timeout, "
                                          "malformed, header_too_large, uri_too_long, evicted, refused)",
                                          ("reason",), registry=reg)
        self.file_descriptors = Gauge("labelserve_file_descriptors", "File descriptors of the server process: open "
                                      "and its limit", ("kind",), multiprocess_mode="liveall", registry=reg)
        for reason in _CLOSE_REASONS:  # exported as 0 from the start, so rate() and alerts work
            self.connections_closed.labels(reason)
        # Per-label health (service.label_metrics refreshes them; per worker in multiprocess mode, label `pid`)
        label = (*_MODEL_LABELS, "label")
        self.label_positive_rate = Gauge("labelserve_label_positive_rate", "Share of the answers in the window that "
                                         "give the label, at its threshold", label, multiprocess_mode="liveall",
                                         registry=reg)
        self.label_baseline_rate = Gauge("labelserve_label_baseline_positive_rate", "Share of the validation images "
                                         "that got the label (the bundle's baseline)", label,
                                         multiprocess_mode="liveall", registry=reg)
        self.label_drift = Gauge("labelserve_label_drift", "PSI between the label's answers in the window and the "
                                 "baseline (absent below LABELSERVE_DRIFT_MIN_IMAGES answers)", label,
                                 multiprocess_mode="liveall", registry=reg)
        self.label_drift_threshold = Gauge("labelserve_label_drift_threshold", "PSI at which a label is flagged "
                                           "(LABELSERVE_DRIFT_THRESHOLD)", _MODEL_LABELS,
                                           multiprocess_mode="liveall", registry=reg)
        self.labels_flagged = Gauge("labelserve_labels_flagged", "Labels whose drift passed the threshold",
                                    _MODEL_LABELS, multiprocess_mode="liveall", registry=reg)
        self.label_window_images = Gauge("labelserve_label_window_images", "Answers in the label monitor's window",
                                         _MODEL_LABELS, multiprocess_mode="liveall", registry=reg)
        self.labels_per_image = Gauge("labelserve_labels_per_image", "Mean labels given per image: served (window) "
                                      "and baseline", (*_MODEL_LABELS, "source"), multiprocess_mode="liveall",
                                      registry=reg)
        self.store_failures = Counter("labelserve_store_failures", "Answers served but not kept for feedback: the "
                                      "store failed", registry=reg)
        self.feedback = Counter("labelserve_feedback", "Feedback received, by kind (full: the true label set; "
                                "partial: labels confirmed or rejected)", (*_MODEL_LABELS, "kind"), registry=reg)
        self.feedback_answers = Gauge("labelserve_feedback_window", "Answers with feedback in the feedback window",
                                      _MODEL_LABELS, multiprocess_mode="liveall", registry=reg)
        self.label_feedback_precision = Gauge("labelserve_label_feedback_precision", "Share of the label's given "
                                              "answers that feedback confirmed", label, multiprocess_mode="liveall",
                                              registry=reg)
        self.label_feedback_recall = Gauge("labelserve_label_feedback_recall", "Share of the label's true presences "
                                           "(per feedback) that were given", label, multiprocess_mode="liveall",
                                           registry=reg)
        shadow = (*_MODEL_LABELS, "candidate")
        self.shadow_flip_rate = Gauge("labelserve_shadow_flip_rate", "Share of the compared images on which the "
                                      "shadow candidate decides the label differently", (*shadow, "label"),
                                      multiprocess_mode="liveall", registry=reg)
        self.shadow_change = Gauge("labelserve_shadow_probability_change", "Mean candidate minus primary probability "
                                   "of the label", (*shadow, "label"), multiprocess_mode="liveall", registry=reg)
        self.shadow_compared = Gauge("labelserve_shadow_compared", "Images answered by both versions in the window",
                                     shadow, multiprocess_mode="liveall", registry=reg)
        self.shadow_mirrored = Gauge("labelserve_shadow_mirrored", "Images copied to the shadow since it started",
                                     shadow, multiprocess_mode="liveall", registry=reg)
        self.shadow_dropped = Gauge("labelserve_shadow_dropped", "Images not copied to the shadow for want of spare "
                                    "capacity, since it started", shadow, multiprocess_mode="liveall", registry=reg)
        self._info_labels: dict[tuple[str, str], tuple[str, str]] = {}

    def set_connections(self, by_phase: dict[str, int]) -> None:
        """Open connections by phase (`service.http.ConnectionTable` reports them every sweep)."""
        for phase, count in by_phase.items():
            self.connections.labels(phase).set(count)

    def count_connection_closed(self, reason: str) -> None:
        """One connection closed or refused by the server."""
        self.connections_closed.labels(reason).inc()

    def set_file_descriptors(self, open_count: int, limit: int) -> None:
        """Descriptors in use and the open-file limit."""
        self.file_descriptors.labels("open").set(open_count)
        self.file_descriptors.labels("limit").set(limit)

    def observer(self, model: str, version: int) -> ModelObserver:
        """The batch observer that records into this model version's series."""
        return ModelObserver(self, model, str(version))

    def set_model_info(self, model: str, version: int, engine: str, provider: str) -> None:
        """Mark a model version as served by `engine` on `provider`."""
        self.model_info.labels(model, str(version), engine, provider).set(1)
        self._info_labels[(model, str(version))] = (engine, provider)

    def clear_model_info(self, model: str, version: int) -> None:
        """Drop the info series of a version that is no longer served."""
        labels = self._info_labels.pop((model, str(version)), None)
        if labels is None:
            return
        if self.multiprocess_dir is not None:  # a removal cannot reach the value in the file; 0 = not served
            self.model_info.labels(model, str(version), *labels).set(0)
        else:
            self.model_info.remove(model, str(version), *labels)


class ModelObserver:
    """`BatchObserver` for one model version, writing into `Metrics`."""

    def __init__(self, metrics: Metrics, model: str, version: str) -> None:
        self._batch_size = metrics.batch_size.labels(model, version)
        self._queue_wait = metrics.queue_wait.labels(model, version)
        self._inference = metrics.inference.labels(model, version)
        self._queue_depth = metrics.queue_depth.labels(model, version)
        self._images = metrics.images.labels(model, version)
        self._rejections = metrics.rejections
        self._labels = (model, version)
        self._rejections.labels(model, version, "queue_full")  # exported as 0 from the start, so rate() works

    def observe_batch(self, size: int, inference_s: float) -> None:
        """Record one engine call."""
        self._batch_size.observe(size)
        self._inference.observe(inference_s)
        self._images.inc(size)

    def observe_queue_wait(self, wait_s: float) -> None:
        """Record one image's wait for its batch."""
        self._queue_wait.observe(wait_s)

    def set_queue_depth(self, depth: int) -> None:
        """Record how many images wait."""
        self._queue_depth.set(depth)

    def observe_rejection(self, reason: str) -> None:
        """Count one refused image."""
        self._rejections.labels(*self._labels, reason).inc()

    def observe_failure(self, size: int, seconds: float) -> None:
        """Engine failures are counted per request, as `labelserve_errors_total{code="engine_error"}`."""


_RESERVED_LOG_KEYS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, any `extra=` fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` as a JSON line."""
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or _REQUEST_ID.get()
        if request_id:
            entry["request_id"] = request_id
        entry.update({k: v for k, v in vars(record).items() if k not in _RESERVED_LOG_KEYS and k != "request_id"})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()  # one line per request: the cheap encoder


def configure_logging(level: str) -> None:
    """Send all logs (uvicorn's included) to stderr as JSON lines at `level`."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def _full_templates(app: object) -> dict[int, list[tuple[re.Pattern[str], str]]]:
    """id(route object) -> (path regex, full path template) for every place the app includes that route.

    FastAPI puts the router's own route object in `scope["route"]`; its `path` lacks the prefixes its router was
    included under (`/v2` of the OIP routes), so the full template comes from the app's route contexts.
    """
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before 0.16x copied included routes with their full path: route.path is complete
        return {}
    templates: dict[int, list[tuple[re.Pattern[str], str]]] = {}
    for context in iter_route_contexts(getattr(app, "routes", [])):
        if isinstance(context.path, str):
            regex = compile_path(context.path)[0]
            templates.setdefault(id(context.original_route), []).append((regex, context.path))
    return templates


def _route_label(scope: Scope, templates: dict[int, list[tuple[re.Pattern[str], str]]]) -> str:
    """The matched route's full path template, e.g. `/v2/models/{name}/infer`; raw paths would explode the label
    cardinality, so anything unmatched is `unmatched`. A request answered before routing (refused at the door, a
    body too large or too slow) is labelled with the template its path matches."""
    route = scope.get("route")
    if route is None:
        path = scope.get("path", "")
        return next((template for options in templates.values() for regex, template in options if regex.match(path)),
                    "unmatched")
    candidates = templates.get(id(route))
    if candidates:
        if len(candidates) == 1:
            return candidates[0][1]
        path = scope.get("path", "")
        return next((template for regex, template in candidates if regex.match(path)), candidates[0][1])
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


def _incoming_request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            return request_id_or_new(value.decode("latin-1"))
    return uuid.uuid4().hex


def request_id_or_new(candidate: str | None) -> str:
    """The client's request id when it is a sane one (letters, digits, `._:-`, at most 128), else a new one."""
    return candidate if candidate is not None and _VALID_REQUEST_ID.match(candidate) else uuid.uuid4().hex


def bind_request_id(request_id: str) -> contextvars.Token[str | None]:
    """Make `request_id` the id logged and answered for the work of this context (`current_request_id`)."""
    return _REQUEST_ID.set(request_id)


def unbind_request_id(token: contextvars.Token[str | None]) -> None:
    """Undo `bind_request_id`."""
    _REQUEST_ID.reset(token)


def record_request(metrics: Metrics, method: str, route: str, path: str, status: int, error_code: str | None,
                   elapsed_s: float, **fields: object) -> None:
    """Count one answered request, time it and write its access log line: the same series and line for every
    protocol (gRPC calls as method `GRPC`, their status the HTTP status of the same error), so one dashboard and one
    5xx alert cover them all."""
    metrics.requests.labels(method, route, str(status)).inc()
    metrics.request_latency.labels(method, route).observe(elapsed_s)
    if error_code is not None:
        metrics.errors.labels(route, error_code).inc()
    logger.info("%s %s %d %.1f ms", method, path, status, elapsed_s * 1000.0,
                extra={"status": status, "route": route, "duration_ms": round(elapsed_s * 1000.0, 3), **fields})


class RequestObservabilityMiddleware:
    """Outermost ASGI middleware: request id in and out, one access log line, request count and latency."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self._templates: dict[int, list[tuple[re.Pattern[str], str]]] | None = None  # built on the first request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope)
        token = _REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500
        error_code: str | None = None
        in_flight = self.metrics.in_flight.labels(str(scope.get("method", "")))
        in_flight.inc()

        traced = None

        async def send_with_id(message: Message) -> None:
            nonlocal status, error_code
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = MutableHeaders(scope=message)
                headers.append(REQUEST_ID_HEADER, request_id)
                if (traceparent := tracing.traceparent_of(traced)) is not None:
                    headers.append(tracing.TRACEPARENT, traceparent)
                error_code = headers.get(ERROR_CODE_HEADER)
            await send(message)

        try:
            if tracing.enabled():
                carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}
                with tracing.server_span(f"{scope.get('method', '')} {scope.get('path', '')}", carrier,
                                         {"http.request.method": str(scope.get("method", "")),
                                          "url.path": str(scope.get("path", "")),
                                          "labelserve.request_id": request_id}) as traced:
                    await self.app(scope, receive, send_with_id)
                    tracing.mark_status(traced, status)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            in_flight.dec()
            elapsed = time.perf_counter() - started
            if self._templates is None:
                self._templates = _full_templates(scope.get("app"))
            record_request(self.metrics, str(scope.get("method", "")), _route_label(scope, self._templates),
                           scope.get("path", ""), status, error_code, elapsed)
            _REQUEST_ID.reset(token)

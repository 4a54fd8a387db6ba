"""`create_app(settings)`: the FastAPI app with its routers, error handlers, middleware and lifespan.

The lifespan loads and warms every model before the server accepts connections and marks the app ready, then
watches the repository for new versions; on shutdown it marks it not ready, then lets the batchers finish what is
queued (bounded by `drain_timeout_s`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service import tracing
from service.admission import AdmissionMiddleware
from service.errors import install_error_handlers
from service.gate import ComputeGate
from service.gpu_metrics import register_gpu_metrics
from service.label_metrics import LabelGauges, refresh_forever
from service.limits import RequestSizeLimitMiddleware
from service.observability import Metrics, RequestObservabilityMiddleware
from service.oip import router as oip_router
from service.oip_grpc import GrpcServer
from service.pipeline import DecodeLimits
from service.predictor import Predictor
from service.protocols import is_inference
from service.repository import ModelRepository
from service.routes import health_router, metrics_router, models_router, page_router, predict_router
from service.routes._auth import scope_authorizer
from service.settings import Settings, get_settings
from service.state import ServiceState
from service.store import Store, StoreConfigError, store_url
from service.store.schema import SchemaError
from service.store.store import purge

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServiceState = app.state.labelserve
    started = time.monotonic()
    watcher: asyncio.Task[None] | None = None
    refresher: asyncio.Task[None] | None = None
    purger: asyncio.Task[None] | None = None
    grpc_server: GrpcServer | None = None
    try:
        state.store = await _open_store(state)
        if state.store is not None:
            purger = asyncio.create_task(_purge_forever(state), name="store-retention")
        await state.repository.load_all()
        if state.settings.grpc:
            grpc_server = GrpcServer(state)
            state.grpc_port = await grpc_server.start()
        state.ready = bool(state.repository.models())
        logger.info("startup took %.2f s; ready=%s, models: %s", time.monotonic() - started, state.ready,
                    ", ".join(f"{m.name} v{m.version}" for m in state.repository.models()) or "none")
        if state.settings.repository_poll_s > 0:
            watcher = asyncio.create_task(state.repository.watch(state.settings.repository_poll_s),
                                          name="repository-watcher")
        if state.settings.monitor_labels:
            gauges = LabelGauges(state.metrics, state.settings.monitor_label_series)
            refresher = asyncio.create_task(refresh_forever(state.repository, gauges,
                                                            state.settings.monitor_refresh_s), name="label-gauges")
        yield
    finally:
        for task in (watcher, refresher, purger):
            if task is not None:
                task.cancel()
        state.ready = False
        logger.info("shutting down: draining queued requests (up to %.1f s)", state.settings.drain_timeout_s)
        if grpc_server is not None:  # calls running finish on the batchers, which drain after them
            await grpc_server.stop(state.settings.drain_timeout_s)
        await state.repository.stop(state.settings.drain_timeout_s)
        if state.store is not None:
            await asyncio.to_thread(state.store.close)  # after the drain: the last answers are kept too


async def _open_store(state: ServiceState) -> Store | None:
    """The store of answers and feedback, or None (logged: answers are served without ids that can take feedback)
    when it cannot be opened."""
    settings = state.settings
    store = Store(store_url(settings.store_url, settings.model_repository))
    try:
        await asyncio.to_thread(store.open)
    except (StoreConfigError, SchemaError) as exc:
        logger.error("no feedback store: %s; answers are served, but feedback on them is refused", exc)
        return None
    return store


async def _purge_forever(state: ServiceState, interval_s: float = 60.0) -> None:
    """Apply the retention limits every minute (every process does; deleting what another deleted is harmless)."""
    settings = state.settings
    while True:
        try:
            assert state.store is not None
            answers, feedbacks = await state.store.run(purge(settings.retention_s, settings.retention_max_predictions,
                                                             settings.feedback_retention_s))
            if answers or feedbacks:
                logger.info("retention: %d answers and %d feedbacks past their limits deleted", answers, feedbacks)
        except Exception:  # a failing purge is retried; the store keeps serving
            logger.exception("applying the store's retention failed; retrying in %.0f s", interval_s)
        await asyncio.sleep(interval_s)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build a service app; nothing is loaded until its lifespan starts.

    Args:
        settings: service settings; default `get_settings()` (the `LABELSERVE_*` environment).
    """
    settings = settings if settings is not None else get_settings()
    if settings.tracing and not tracing.enabled():
        tracing.enable()
    metrics = Metrics()
    register_gpu_metrics(metrics.registry)
    gate = ComputeGate(settings.in_flight_limit, settings.admission_wait_s, on_refused=metrics.admission_rejections.inc)
    repository = ModelRepository(settings, metrics, requests_in_flight=lambda: gate.in_flight)
    state = ServiceState(
        settings=settings, metrics=metrics, repository=repository,
        predictor=Predictor(DecodeLimits(max_image_bytes=settings.max_image_bytes,
                                         max_image_pixels=settings.max_image_pixels),
                            torch_jpeg_device=settings.torch_device if settings.jpeg_decode == "torch" else None,
                            shadow_for=repository.shadow_for),
        gate=gate,
    )
    app = FastAPI(title="labelserve", summary="Multi-label image classification", lifespan=_lifespan)
    app.state.labelserve = state
    install_error_handlers(app)
    for router in (predict_router, models_router, health_router, metrics_router, oip_router, page_router):
        app.include_router(router)
    # Added innermost first: observability, then the size limit, then admission (which reads the bodies), then routes.
    app.add_middleware(AdmissionMiddleware, inference=is_inference, gate=state.gate, max_uploads=settings.max_uploads,
                       upload_buffer_bytes=settings.upload_buffer_bytes, request_timeout_s=settings.request_timeout_s,
                       on_refused=metrics.admission_rejections.inc, wait_s=settings.admission_wait_s,
                       authorize=scope_authorizer(settings))
    app.add_middleware(RequestSizeLimitMiddleware, max_request_bytes=settings.max_request_bytes)
    app.add_middleware(RequestObservabilityMiddleware, metrics=metrics)  # added last = outermost
    return app

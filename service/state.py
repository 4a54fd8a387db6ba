"""The per-app state the routes work with, and the dependency that hands it to them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from service.gate import ComputeGate
from service.observability import Metrics
from service.predictor import Predictor
from service.repository import ModelRepository
from service.settings import Settings
from service.store import Store

__all__ = ["ServiceState", "StateDep", "app_state", "get_state"]


@dataclass
class ServiceState:
    """Everything one app instance owns; built by `create_app`, started and stopped by its lifespan."""

    settings: Settings
    metrics: Metrics
    repository: ModelRepository
    predictor: Predictor
    gate: ComputeGate  # the compute slots every protocol takes (service.gate)
    ready: bool = False
    grpc_port: int | None = None  # where OIP over gRPC listens, once the lifespan started it
    store: Store | None = None  # answers and feedback; None until the lifespan opened it (or when it could not)


def app_state(request: Request) -> ServiceState:
    """The state of the app handling `request`."""
    state: ServiceState = request.app.state.labelserve
    return state


async def get_state(request: Request) -> ServiceState:
    """Dependency form of `app_state`: async, because FastAPI runs a plain `def` dependency on a worker thread, a
    thread hop per request for a dictionary lookup."""
    return app_state(request)


StateDep = Annotated[ServiceState, Depends(get_state)]

"""Liveness and readiness, for load balancers and Kubernetes probes."""

from __future__ import annotations

from fastapi import APIRouter

from labelserve.schemas import ErrorBody, ReadyStatus
from service.errors import NotReadyError
from service.state import StateDep

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=ReadyStatus)
async def healthz() -> ReadyStatus:
    """200 while the process can answer at all; restart the pod when this fails."""
    return ReadyStatus(status="alive")


@router.get("/readyz", response_model=ReadyStatus, responses={503: {"model": ErrorBody}})
async def readyz(state: StateDep) -> ReadyStatus:
    """200 once every model is loaded and warmed up, 503 before that and while shutting down."""
    if not state.ready:
        raise NotReadyError("models are loading, none could be loaded, or the server is shutting down")
    return ReadyStatus(status="ready", models=[model.name for model in state.repository.models()])

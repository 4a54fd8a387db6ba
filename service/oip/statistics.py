"""Triton's statistics extension, with each model version's per-label health and shadow comparison added:

    GET /v2/models/stats                              every served version
    GET /v2/models/{name}/stats                       every served version of one model
    GET /v2/models/{name}/versions/{version}/stats    one version

The shape is Triton's (`{"model_stats": [...]}`, service.statistics), so `tritonclient`'s `get_inference_statistics`
works unchanged; `label_stats` (service.label_monitor) and `shadow` (service.shadow) are labelserve's additions,
present on every entry (`null` shadow, `"status": "off"` labels when monitoring is switched off).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from service.oip.versions import parse_version
from service.repository import ModelRepository, ServedModel
from service.routes._auth import require_api_key
from service.state import StateDep

__all__ = ["router"]

router = APIRouter(dependencies=[Depends(require_api_key)])


def model_entry(repository: ModelRepository, served: ServedModel) -> dict[str, Any]:
    """One version's statistics entry, with its label health and the shadow it is the primary of."""
    shadow = repository.shadow_for(served)
    entry = served.statistics.as_dict(served.name, served.version)
    entry["label_stats"] = served.monitor.report().as_dict() if served.monitor is not None else {"status": "off"}
    entry["default"] = repository.default_version(served.name) == served.version
    entry["shadow"] = shadow.report().as_dict() if shadow is not None else None
    entry["feedback"] = served.feedback.report().as_dict()
    return entry


@router.get("/models/stats")
async def all_statistics(state: StateDep) -> dict[str, Any]:
    """Statistics of every served model version."""
    repository = state.repository
    return {"model_stats": [model_entry(repository, served) for served in repository.models()]}


@router.get("/models/{name}/stats")
async def model_statistics(state: StateDep, name: str) -> dict[str, Any]:
    """Statistics of every served version of `name` (404 for a model not served)."""
    repository = state.repository
    repository.get(name)  # ModelNotFoundError (404) for an unknown model
    return {"model_stats": [model_entry(repository, served) for served in repository.models()
                            if served.name == name]}


@router.get("/models/{name}/versions/{version}/stats")
async def version_statistics(state: StateDep, name: str, version: str) -> dict[str, Any]:
    """Statistics of one served version."""
    served = state.repository.get(name, parse_version(version))
    return {"model_stats": [model_entry(state.repository, served)]}

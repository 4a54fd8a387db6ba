"""What this server serves."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from labelserve.schemas import InputInfo, ModelInfo, ModelList
from service.repository import ServedModel
from service.routes._auth import require_api_key
from service.state import StateDep

__all__ = ["router"]

router = APIRouter(tags=["models"], dependencies=[Depends(require_api_key)])


def _describe(model: ServedModel) -> ModelInfo:
    spec = model.manifest.input
    return ModelInfo(
        name=model.name, version=model.version, task=model.manifest.task, labels=list(model.manifest.labels),
        thresholds=list(model.manifest.thresholds),
        input=InputInfo(height=spec.height, width=spec.width, resize=spec.resize, interpolation=spec.interpolation),
        attention=model.has_attention, engine=f"{model.engine.info.name}/{model.engine.info.provider}",
        max_batch_size=model.batcher.max_batch_size,
    )


@router.get("/models", response_model=ModelList)
async def list_models(state: StateDep) -> ModelList:
    """Served models: name, version, labels, input size and whether attention maps are available."""
    return ModelList(models=[_describe(model) for model in state.repository.models()])

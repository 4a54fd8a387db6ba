"""What this server serves."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from labelserve.recalibrate import CALIBRATION_FILENAME
from labelserve.schemas import InputInfo, ModelInfo, ModelList
from service.errors import ModelNotFoundError
from service.oip.versions import parse_version
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
        calibration=model.manifest.calibration.model_dump() if model.manifest.calibration is not None else None,
    )


@router.get("/models", response_model=ModelList)
async def list_models(state: StateDep) -> ModelList:
    """Served models: name, version, labels, input size and whether attention maps are available."""
    return ModelList(models=[_describe(model) for model in state.repository.models()])


@router.get("/models/{name}/versions/{version}/calibration")
async def calibration_report(state: StateDep, name: str, version: str) -> Response:
    """The per-label report of a version recalibrated from feedback (404 for one that was not)."""
    manifest = state.repository.manifest_of(name, parse_version(version) or 0)
    path = state.repository.root / name / str(manifest.version) / CALIBRATION_FILENAME
    if manifest.calibration is None or not path.is_file():
        raise ModelNotFoundError(f"{name} v{manifest.version} was not recalibrated from feedback: it has no report")
    return Response(path.read_bytes(), media_type="application/json")

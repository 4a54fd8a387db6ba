"""`POST /v2/models/{name}/feedback`: what was really in an answered image, so thresholds can learn from it.

    {"id": "<answer id>", "labels": ["cat", "sofa"]}                 the full true set: every other label is absent
    {"id": "<answer id>", "confirm": ["cat"], "reject": ["dog"]}      partial: only these labels are known

The id is an answer's (`/predict`'s `results[].id`, OIP's `parameters.prediction_ids`). Feedback is kept in the
store with the answer's probabilities, merged with what earlier feedback said (a label it names takes the new value;
the same feedback twice changes nothing), and acknowledged only once committed. 404 for an id the store does not
hold (or another model's), 400 for a label the answering version does not have. The API key applies.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from service.errors import InvalidParameterError, PredictionNotFoundError, StoreUnavailableError
from service.oip.codec import load_json
from service.routes._auth import check_api_key
from service.routes._guard import read_body
from service.state import app_state
from service.store.store import find_answer, save_feedback

__all__ = ["FeedbackRequest", "router", "truth_update"]

# The handler takes the bare request (no dependencies to solve, orjson out), like /predict: feedback arrives at the
# rate people review answers, beside inference, and its CPU is taken from inference.
router = APIRouter()


class FeedbackRequest(BaseModel):
    """One answer's true labels: all of them (`labels`), or some confirmed and some rejected."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=256, description="the answer's id")
    labels: list[str] | None = Field(default=None, description="every label that is present; the rest are absent")
    confirm: list[str] = Field(default_factory=list, description="labels known to be present")
    reject: list[str] = Field(default_factory=list, description="labels known to be absent")

    @model_validator(mode="after")
    def _one_kind(self) -> FeedbackRequest:
        if self.labels is not None and (self.confirm or self.reject):
            raise ValueError("send either 'labels' (the full true set) or 'confirm'/'reject' (some labels), not both")
        if self.labels is None and not (self.confirm or self.reject):
            raise ValueError("send 'labels' (the full true set, [] for none) or 'confirm'/'reject'")
        if both := set(self.confirm) & set(self.reject):
            raise ValueError(f"labels both confirmed and rejected: {sorted(both)}")
        return self

    @property
    def kind(self) -> str:
        """full or partial."""
        return "full" if self.labels is not None else "partial"


def truth_update(labels: tuple[str, ...], feedback: FeedbackRequest) -> np.ndarray:
    """`[C]` int8: 1 present, 0 absent, -1 unknown, from a feedback on a version with `labels`.

    Raises:
        InvalidParameterError: a label the version does not have (400).
    """
    named = feedback.labels if feedback.labels is not None else [*feedback.confirm, *feedback.reject]
    if unknown := sorted(set(named) - set(labels)):
        shown = ", ".join(labels[:20]) + (", ..." if len(labels) > 20 else "")
        raise InvalidParameterError(f"unknown label(s) {unknown[:10]}; this model version has: {shown}")
    index = {label: i for i, label in enumerate(labels)}
    if feedback.labels is not None:
        update = np.zeros(len(labels), np.int8)
        update[[index[label] for label in feedback.labels]] = 1
        return update
    update = np.full(len(labels), -1, np.int8)
    update[[index[label] for label in feedback.confirm]] = 1
    update[[index[label] for label in feedback.reject]] = 0
    return update


@router.post("/models/{name}/feedback", response_model=dict[str, Any])
async def feedback(request: Request) -> Response:
    """Record what was really in an answered image."""
    state = app_state(request)
    check_api_key(request, state.settings)
    name: str = request.path_params["name"]
    try:
        given = FeedbackRequest.model_validate(load_json(await read_body(request), "the feedback"))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise InvalidParameterError(f"the feedback is not valid: {problems}") from None
    if state.store is None:
        raise StoreUnavailableError("this server has no feedback store (LABELSERVE_STORE_URL could not be opened; "
                                    "see its log)")
    answer = await state.store.run(find_answer(given.id))
    if answer.model != name:
        raise PredictionNotFoundError(f"answer {given.id!r} was given by model {answer.model!r}, not {name!r}")
    labels = state.repository.manifest_of(name, answer.version).labels
    update = truth_update(labels, given)
    before = await state.store.run(save_feedback(answer, update))
    after = np.where(update >= 0, update, before)
    state.metrics.feedback.labels(name, str(answer.version), given.kind).inc()
    served = state.repository.served(name, answer.version)
    if served is not None:
        served.feedback.observe(answer.probabilities, before, after)
    return Response(orjson.dumps({"id": given.id, "model": name, "version": answer.version,
                                  "present": [labels[i] for i in np.flatnonzero(after == 1)],
                                  "absent": [labels[i] for i in np.flatnonzero(after == 0)],
                                  "unknown": int((after < 0).sum())}), media_type="application/json")

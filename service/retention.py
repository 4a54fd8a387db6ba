"""Answers that can be answered back: an id for every prediction, and (with retention on) its probabilities kept in
the store until `LABELSERVE_RETENTION_S`, so `POST /v2/models/{name}/feedback` can name it.

A request's id is the client's `X-Request-ID` when it sends a valid one, else a fresh one; an image's prediction id
is the request id for a single image, `<request id>/<index>` in a request of several. The request awaits the store's
commit before answering, so every id a client receives can take feedback, even if the process is killed right after.
A store that fails does not fail the answer: it is logged (at most once a minute) and counted, and that answer's id
gets a 404 on feedback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np

from service.errors import StoreUnavailableError
from service.observability import Metrics
from service.store import PredictionRow, Store
from service.store.store import insert_predictions

__all__ = ["PREDICTION_IDS_HEADER", "keep_answers", "prediction_ids"]

PREDICTION_IDS_HEADER = "X-Prediction-Ids"  # the answers' ids, comma-separated, in result order

logger = logging.getLogger(__name__)
_WARN_EVERY_S = 60.0
_last_warning = [-_WARN_EVERY_S]


def prediction_ids(request_id: str, count: int) -> list[str]:
    """The ids of a request's `count` answers."""
    return [request_id] if count == 1 else [f"{request_id}/{index}" for index in range(count)]


async def keep_answers(store: Store | None, metrics: Metrics, model: str, version: int, ids: Sequence[str],
                       probabilities: Sequence[np.ndarray], images: Sequence[bytes | None]) -> bool:
    """Keep the answers in the store (awaiting its commit); False when there is no store or it failed."""
    if store is None:
        return False
    created = time.time()
    rows = [PredictionRow(answer_id, model, version, created, probs, image)
            for answer_id, probs, image in zip(ids, probabilities, images, strict=True)]
    try:
        await store.run(insert_predictions(rows))
    except StoreUnavailableError as exc:
        metrics.store_failures.inc()
        if time.monotonic() - _last_warning[0] >= _WARN_EVERY_S:
            _last_warning[0] = time.monotonic()
            logger.warning("answers are served but not kept for feedback: %s", exc.message)
        return False
    return True

"""errors.py: every domain error maps to one status and the `{"error", "code"}` body."""

from __future__ import annotations

import json

import pytest

from service.errors import (
    ClientDisconnectedError,
    DeadlineExceededError,
    EngineError,
    ImageTooLargeError,
    InvalidImageError,
    InvalidParameterError,
    ModelNotFoundError,
    NotReadyError,
    QueueFullError,
    RequestTooLargeError,
    ServiceError,
    TooManyImagesError,
    UnsupportedImageError,
    UnsupportedMediaTypeError,
    error_response,
)


@pytest.mark.parametrize(("error", "status", "code"), [
    (InvalidImageError("x"), 400, "invalid_image"),
    (InvalidParameterError("x"), 400, "invalid_parameter"),
    (ModelNotFoundError("x"), 404, "model_not_found"),
    (ImageTooLargeError("x"), 413, "image_too_large"),
    (TooManyImagesError("x"), 413, "too_many_images"),
    (RequestTooLargeError("x"), 413, "request_too_large"),
    (UnsupportedImageError("x"), 415, "unsupported_image"),
    (UnsupportedMediaTypeError("x"), 415, "unsupported_media_type"),
    (ClientDisconnectedError("x"), 499, "client_disconnected"),
    (EngineError("x"), 500, "engine_error"),
    (ServiceError("x"), 500, "internal_error"),
    (QueueFullError("x"), 503, "queue_full"),
    (NotReadyError("x"), 503, "not_ready"),
    (DeadlineExceededError("x"), 504, "deadline_exceeded"),
])
def test_status_and_body(error: ServiceError, status: int, code: str) -> None:
    response = error_response(error)
    assert response.status_code == status
    assert json.loads(response.body) == {"error": "x", "code": code}


def test_queue_full_tells_when_to_retry() -> None:
    response = error_response(QueueFullError("busy", retry_after_s=3))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "3"
    assert error_response(NotReadyError("loading")).headers["retry-after"] == "1"
    assert "retry-after" not in error_response(EngineError("boom")).headers


def test_retryable_errors_say_when_to_retry_and_auth_errors_how_to_authenticate() -> None:
    from service.errors import NotReadyError, QueueFullError, UnauthorizedError, error_response

    full = error_response(QueueFullError("queue is full", retry_after_s=2))
    assert (full.status_code, full.headers["Retry-After"], full.headers["X-Error-Code"]) == (503, "2", "queue_full")
    assert error_response(NotReadyError("loading")).headers["Retry-After"] == "1"
    assert error_response(UnauthorizedError("key")).headers["WWW-Authenticate"].startswith("ApiKey")

"""Domain errors of the service and the one place that turns them (and every other failure) into HTTP.

Code below the routes raises these exceptions and knows nothing about status codes; `install_error_handlers`
makes every error response the same JSON shape, `{"error": "<what was wrong>", "code": "<machine code>"}`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Scope

from labelserve.schemas import ErrorBody

__all__ = [
    "API_KEY_HEADER",
    "ERROR_CODE_HEADER",
    "ClientDisconnectedError",
    "DeadlineExceededError",
    "EngineError",
    "HeadersTooLargeError",
    "ImageTooLargeError",
    "InvalidImageError",
    "InvalidParameterError",
    "MalformedRequestError",
    "ModelNotFoundError",
    "NotReadyError",
    "PredictionNotFoundError",
    "QueueFullError",
    "RequestTimeoutError",
    "RequestTooLargeError",
    "ServerBusyError",
    "ServiceError",
    "StoreUnavailableError",
    "TooManyConnectionsError",
    "TooManyImagesError",
    "UnauthorizedError",
    "UnsupportedImageError",
    "UnsupportedMediaTypeError",
    "UriTooLongError",
    "client_fault",
    "error_response",
    "error_responses",
    "install_error_handlers",
    "raw_error_response",
    "record_protocol_error",
    "status_code_for",
]

logger = logging.getLogger(__name__)

_PROTOCOL_ERROR_KEY = "labelserve_protocol_error"

API_KEY_HEADER = "X-API-Key"
ERROR_CODE_HEADER = "X-Error-Code"


class ServiceError(Exception):
    """Base of every error the service reports to a client; `code` is the stable machine-readable name."""

    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidImageError(ServiceError):
    """The upload is an image format we read, but it is empty, corrupt or truncated."""

    code = "invalid_image"


class InvalidParameterError(ServiceError):
    """A request parameter is well-formed but cannot be honoured (e.g. attention from a model without it)."""

    code = "invalid_parameter"


class MalformedRequestError(ServiceError):
    """The request body does not follow the syntax its content type promises (e.g. a broken multipart body)."""

    code = "malformed_request"


class ModelNotFoundError(ServiceError):
    """The request names a model this server does not serve."""

    code = "model_not_found"


class PredictionNotFoundError(ServiceError):
    """Feedback names an answer id the store does not hold."""

    code = "prediction_not_found"


class ImageTooLargeError(ServiceError):
    """One image has too many bytes or too many pixels."""

    code = "image_too_large"


class TooManyImagesError(ServiceError):
    """More images in one request than `max_images_per_request`."""

    code = "too_many_images"


class RequestTooLargeError(ServiceError):
    """The request body is larger than `max_request_bytes`."""

    code = "request_too_large"


class UnsupportedImageError(ServiceError):
    """The upload is not an image in a format the service accepts."""

    code = "unsupported_image"


class UnsupportedMediaTypeError(ServiceError):
    """The request or one of its parts was sent with a content type the endpoint does not take."""

    code = "unsupported_media_type"


class RequestTimeoutError(ServiceError):
    """The client did not send its request (headers or body) within the time limits: its fault, not the server's."""

    code = "request_timeout"


class HeadersTooLargeError(ServiceError):
    """The request line and headers are larger than LABELSERVE_MAX_HEADER_BYTES or have too many fields."""

    code = "request_header_fields_too_large"


class UriTooLongError(ServiceError):
    """The request target alone is larger than LABELSERVE_MAX_HEADER_BYTES."""

    code = "uri_too_long"


class UnauthorizedError(ServiceError):
    """An inference route was called without the API key the server was configured with."""

    code = "unauthorized"


class RetryableError(ServiceError):
    """A temporary refusal: the client should retry after `retry_after_s` seconds."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, int(retry_after_s))


class QueueFullError(RetryableError):
    """The model's batch queue is full: the server is saturated."""

    code = "queue_full"


class ServerBusyError(RetryableError):
    """The server already handles LABELSERVE_MAX_IN_FLIGHT inference requests; refused before the body is read."""

    code = "server_busy"


class TooManyConnectionsError(RetryableError):
    """The process holds LABELSERVE_MAX_CONNECTIONS connections, none of them idle; refused before any request."""

    code = "too_many_connections"


class NotReadyError(RetryableError):
    """Models are still loading, or the server is shutting down."""

    code = "not_ready"


class DeadlineExceededError(ServiceError):
    """The request did not finish within `request_timeout_s`."""

    code = "deadline_exceeded"


class StoreUnavailableError(RetryableError):
    """The feedback store could not write or read right now."""

    code = "store_unavailable"


class EngineError(ServiceError):
    """The inference engine failed on the batch this request was part of."""

    code = "engine_error"


class ClientDisconnectedError(ServiceError):
    """The client went away before its answer was ready; the work was cancelled."""

    code = "client_disconnected"


# Most specific class first: status_code_for walks the exception's MRO.
_STATUS: dict[type[ServiceError], int] = {
    InvalidImageError: 400,
    InvalidParameterError: 400,
    MalformedRequestError: 400,
    UnauthorizedError: 401,
    ModelNotFoundError: 404,
    PredictionNotFoundError: 404,
    RequestTimeoutError: 408,
    ImageTooLargeError: 413,
    TooManyImagesError: 413,
    RequestTooLargeError: 413,
    UriTooLongError: 414,
    UnsupportedImageError: 415,
    HeadersTooLargeError: 431,
    UnsupportedMediaTypeError: 415,
    ClientDisconnectedError: 499,  # nginx's "client closed request"; nobody reads it, but logs and metrics do
    EngineError: 500,
    QueueFullError: 503,
    ServerBusyError: 503,
    TooManyConnectionsError: 503,
    NotReadyError: 503,
    StoreUnavailableError: 503,
    DeadlineExceededError: 504,
}
_HTTP_STATUSES = frozenset(int(status) for status in HTTPStatus)
_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "request_too_large",
               415: "unsupported_media_type"}


# OpenAPI examples of the error bodies each status can carry: (code, message) as the service words them.
_EXAMPLES: dict[int, tuple[tuple[str, str], ...]] = {
    400: (("invalid_image", "scene.jpg is not a valid image: image file is truncated"),
          ("invalid_parameter", "model 'demo' has no attention output; send attention=false")),
    401: (("unauthorized", "this server needs an API key: send it in the X-API-Key header"),),
    404: (("model_not_found", "unknown model 'dmeo'; this server serves: demo"),),
    413: (("image_too_large", "scene.jpg has 30000000 bytes, over the limit of 20000000 (LABELSERVE_MAX_IMAGE_BYTES)"),
          ("too_many_images", "40 images in one request, over the limit of 32 (LABELSERVE_MAX_IMAGES_PER_REQUEST)")),
    415: (("unsupported_image", "notes.txt is not an image in an accepted format (JPEG, PNG, WEBP, GIF, BMP, TIFF)"),),
    422: (("validation_error", "invalid request: top_k: Input should be greater than or equal to 1"),),
    500: (("engine_error", "inference failed for model 'demo': <the engine's message>"),),
    503: (("queue_full", "model 'demo-v1' has 256 images queued; retry shortly"),
          ("server_busy", "the server is handling its limit of 64 inference requests (LABELSERVE_MAX_IN_FLIGHT); "
                          "retry after 1 s")),
    504: (("deadline_exceeded", "the request did not finish within its deadline of 30 s (the timeout_s field; "
                                "default LABELSERVE_REQUEST_TIMEOUT_S)"),),
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for a route: the error body's schema with a worded example per error code."""
    return {status: {"model": ErrorBody, "content": {"application/json": {"examples": {
        code: {"summary": code, "value": {"error": message, "code": code}} for code, message in _EXAMPLES[status]}}}}
        for status in statuses}


def status_code_for(error: ServiceError) -> int:
    """The HTTP status of a domain error (500 for any ServiceError without a mapping)."""
    for cls in type(error).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return 500


def _json_error(message: str, code: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error response shape; the code also goes in `X-Error-Code` so metrics and proxies need no body."""
    return JSONResponse({"error": message, "code": code}, status_code=status,
                        headers={**(headers or {}), ERROR_CODE_HEADER: code})


def error_response(error: ServiceError) -> JSONResponse:
    """The JSON response for a domain error; also used by middleware that answers before routing."""
    headers = {"Retry-After": str(error.retry_after_s)} if isinstance(error, RetryableError) else None
    if isinstance(error, UnauthorizedError):
        headers = {"WWW-Authenticate": f'ApiKey header="{API_KEY_HEADER}"'}
    return _json_error(error.message, error.code, status_code_for(error), headers)


def raw_error_response(error: ServiceError, default_headers: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    """The same error as `error_response`, as the bytes of a whole HTTP/1.1 response that closes the connection: for
    the HTTP layer (service.http), which answers requests the app never sees (bad HTTP, header limits, timeouts)."""
    body = orjson.dumps({"error": error.message, "code": error.code})
    status = status_code_for(error)
    headers = [*default_headers, (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)),
               (b"connection", b"close"), (ERROR_CODE_HEADER.lower().encode(), error.code.encode())]
    if isinstance(error, RetryableError):
        headers.append((b"retry-after", b"%d" % error.retry_after_s))
    phrase = HTTPStatus(status).phrase.encode() if status in _HTTP_STATUSES else b""
    lines = [b"HTTP/1.1 %d %s" % (status, phrase), *(name + b": " + value for name, value in headers)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def record_protocol_error(scope: Scope, error: ServiceError) -> None:
    """Note in a request's scope that the HTTP layer (service.http) ended it with `error`, already written to the
    client: a body that stalled, bytes that are not HTTP."""
    scope.setdefault("state", {})[_PROTOCOL_ERROR_KEY] = error


def client_fault(scope: Scope) -> ServiceError:
    """What to report for a request whose client is gone (the app sees only a disconnect): the error the HTTP layer
    answered it with, or a plain 499. Either way the client's fault: never a 5xx, never a traceback."""
    recorded = scope.get("state", {}).get(_PROTOCOL_ERROR_KEY)
    if isinstance(recorded, ServiceError):
        return recorded
    return ClientDisconnectedError("the client closed the connection before its request was answered")


def _describe_validation(errors: list[Any]) -> str:
    parts = []
    for error in errors:
        location = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path"))
        parts.append(f"{location}: {error.get('msg', 'invalid')}" if location else str(error.get("msg", "invalid")))
    return "invalid request: " + "; ".join(parts)


async def _service_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ServiceError)
    status = status_code_for(error)
    if status >= 500:
        logger.warning("request failed: %s (%s)", error.message, error.code)
    return error_response(error)


async def _validation_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return _json_error(_describe_validation(list(error.errors())), "validation_error", 422)


async def _http_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    # FastAPI wraps anything raised while it parses the body (our byte limit included) in a 400 HTTPException.
    if isinstance(error.__cause__, ServiceError):
        return error_response(error.__cause__)
    if isinstance(error.__cause__, ClientDisconnect):
        return error_response(client_fault(_request.scope))
    code = _HTTP_CODES.get(error.status_code, f"http_{error.status_code}")
    return _json_error(str(error.detail), code, error.status_code, dict(error.headers or {}))


async def _client_gone(request: Request, _error: Exception) -> JSONResponse:
    # starlette raises ClientDisconnect from a body read whose client left: an answer nobody reads, counted as such
    return error_response(client_fault(request.scope))


async def _unexpected_error(_request: Request, error: Exception) -> JSONResponse:
    logger.error("unhandled error", exc_info=error)
    return _json_error("internal server error", "internal_error", 500)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error response the `{"error", "code"}` shape."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unexpected_error)

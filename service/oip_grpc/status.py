"""The gRPC status of each service error, as Triton maps its own (invalid argument, not found, unavailable, ...)."""

from __future__ import annotations

import grpc

from service.errors import ServiceError, status_code_for

__all__ = ["grpc_status"]

# By the HTTP status the same error gets, so both protocols agree on what was the client's fault.
_BY_HTTP_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT, 413: grpc.StatusCode.INVALID_ARGUMENT,
    415: grpc.StatusCode.INVALID_ARGUMENT, 422: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED, 404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED, 504: grpc.StatusCode.DEADLINE_EXCEEDED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED, 499: grpc.StatusCode.CANCELLED,
    503: grpc.StatusCode.UNAVAILABLE,
}


def grpc_status(error: ServiceError) -> grpc.StatusCode:
    """The status code to abort a call with for `error` (INTERNAL for a server fault)."""
    return _BY_HTTP_STATUS.get(status_code_for(error), grpc.StatusCode.INTERNAL)

"""Optional API-key check for the inference and model routes (health and metrics stay open for probes and scrapes).

The key is compared in constant time; `Authorization: Bearer <key>` is accepted as well as `X-API-Key`, since
many HTTP clients and gateways only know the former.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import Request
from starlette.datastructures import Headers
from starlette.types import Scope

from service.errors import API_KEY_HEADER, UnauthorizedError
from service.settings import Settings
from service.state import app_state

__all__ = ["api_key_error", "check_api_key", "require_api_key", "scope_authorizer"]


def _presented_key(headers: Headers) -> str | None:
    key = headers.get(API_KEY_HEADER)
    if key is not None:
        return key
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None


def api_key_error(headers: Headers, settings: Settings) -> UnauthorizedError | None:
    """The 401 to answer unless the configured key, if any, is in `headers`; None when the request may pass."""
    expected = settings.api_key
    if expected is None:
        return None
    presented = _presented_key(headers)
    if presented is None:
        return UnauthorizedError(f"this server needs an API key: send it in the {API_KEY_HEADER} header")
    if not hmac.compare_digest(presented.encode(), expected.get_secret_value().encode()):
        return UnauthorizedError("the API key is not valid")
    return None


def check_api_key(request: Request, settings: Settings) -> None:
    """Raise UnauthorizedError (401) unless the configured key, if any, was presented."""
    if (error := api_key_error(request.headers, settings)) is not None:
        raise error


def scope_authorizer(settings: Settings) -> Callable[[Scope], UnauthorizedError | None] | None:
    """The admission middleware's check of a request's key, made before its body is read; None when no key is set."""
    if settings.api_key is None:
        return None
    return lambda scope: api_key_error(Headers(scope=scope), settings)


async def require_api_key(request: Request) -> None:
    """Dependency form of `check_api_key` (async, so FastAPI does not hand it to a worker thread)."""
    check_api_key(request, app_state(request).settings)

"""Optional API-key check for the inference and model routes (health and metrics stay open for probes and scrapes).

The key is compared in constant time; `Authorization: Bearer <key>` is accepted as well as `X-API-Key`, since
many HTTP clients and gateways only know the former.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from service.errors import API_KEY_HEADER, UnauthorizedError
from service.settings import Settings
from service.state import app_state

__all__ = ["check_api_key", "require_api_key"]


def _presented_key(request: Request) -> str | None:
    key = request.headers.get(API_KEY_HEADER)
    if key is not None:
        return key
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None


def check_api_key(request: Request, settings: Settings) -> None:
    """Raise UnauthorizedError (401) unless the configured key, if any, was presented."""
    expected = settings.api_key
    if expected is None:
        return
    presented = _presented_key(request)
    if presented is None:
        raise UnauthorizedError(f"this server needs an API key: send it in the {API_KEY_HEADER} header")
    if not hmac.compare_digest(presented.encode(), expected.get_secret_value().encode()):
        raise UnauthorizedError("the API key is not valid")


async def require_api_key(request: Request) -> None:
    """Dependency form of `check_api_key` (async, so FastAPI does not hand it to a worker thread)."""
    check_api_key(request, app_state(request).settings)

"""Which version answers a request that names none: the default, or a canary for a steady share of clients.

A client's key (the configured header, else its address) is hashed to a number in [0, 1); clients below the canary's
weight get the canary, every time, so one client never sees answers flip between versions from one request to the
next, and raising the weight only moves clients from the default to the canary.
"""

from __future__ import annotations

import hashlib

from starlette.types import Scope

__all__ = ["client_key", "in_canary"]


def client_key(scope: Scope, header: str) -> str:
    """The request's stickiness key: the value of `header`, else the client's address (without its port)."""
    wanted = header.lower().encode("latin-1")
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return value.decode("latin-1")
    client = scope.get("client")
    return str(client[0]) if client else ""


def in_canary(key: str, weight: float) -> bool:
    """Whether the client with `key` belongs to the canary's `weight` share (the same answer for the same key)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < weight

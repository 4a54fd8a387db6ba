"""Helpers of the deploy tests (imported by name: this folder is on sys.path under pytest)."""

from __future__ import annotations

import shutil
import socket

import httpx
import pytest


def tool(name: str) -> str:
    """Path of a command-line tool the deploy tests need; a clear failure when it is missing."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: `make test` installs it (Debian package `prometheus`)")
    return found


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def query(prometheus: str, promql: str) -> float | None:
    """An instant PromQL query against a real Prometheus: the first sample's value, None when the result is empty.
    A query Prometheus refuses (bad syntax, unknown function) fails the test with Prometheus' error."""
    data = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=10).json()
    assert data["status"] == "success", f"{promql}: {data}"
    results = data["data"]["result"]
    return float(results[0]["value"][1]) if results else None

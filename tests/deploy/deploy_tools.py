"""Helpers of the deploy tests (imported by name: this folder is on sys.path under pytest)."""

from __future__ import annotations

import shutil
import socket
from typing import Any

import httpx
import pytest
from kubernetes.client import ApiClient

# kind -> the `kubernetes` package's model class of that API object
KUBERNETES_MODELS = {"Deployment": "V1Deployment", "Service": "V1Service", "ConfigMap": "V1ConfigMap",
                     "PersistentVolumeClaim": "V1PersistentVolumeClaim", "PodDisruptionBudget": "V1PodDisruptionBudget",
                     "HorizontalPodAutoscaler": "V2HorizontalPodAutoscaler"}


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


def _paths(value: Any, prefix: str = "") -> set[str]:
    """Every key path in a JSON-like value (list indices folded), to compare field names, not value types."""
    if isinstance(value, dict):
        return {p for k, v in value.items() if v is not None for p in _paths(v, f"{prefix}.{k}") | {f"{prefix}.{k}"}}
    if isinstance(value, list):
        return {p for item in value for p in _paths(item, f"{prefix}[]")}
    return set()


def assert_valid_kubernetes_object(obj: dict[str, Any]) -> None:
    """Deserialise into the API model (required fields are enforced there) and back: no unknown fields."""
    client = ApiClient()
    model = client._ApiClient__deserialize(obj, KUBERNETES_MODELS[obj["kind"]])  # the public one wants a response
    again = client.sanitize_for_serialization(model)
    unknown = _paths(obj) - _paths(again)
    assert not unknown, f"{obj['kind']} has fields the Kubernetes API does not know: {sorted(unknown)}"

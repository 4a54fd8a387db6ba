"""Service test fixtures: in-process apps over the real `model_repository` bundle (reference outputs and the
image fixtures live in tests/conftest.py, shared with the end-to-end tests)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from service.app import create_app
from service.settings import Settings


@pytest.fixture(scope="session", autouse=True)
def _no_labelserve_environment() -> Iterator[None]:
    """Tests build their Settings explicitly; stray LABELSERVE_* variables of the shell must not leak in. gRPC
    listens on a port the kernel picks: apps alive at once (module fixtures) must not fight for 8001."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("LABELSERVE_")]:
            patch.delenv(name)
        patch.setenv("LABELSERVE_GRPC_PORT", "0")
        yield


@pytest.fixture(scope="module")
def client(model_repository: Path) -> Iterator[TestClient]:
    """The real app on the tiny model, lifespan running, default settings."""
    with TestClient(create_app(Settings(model_repository=model_repository))) as test_client:
        yield test_client

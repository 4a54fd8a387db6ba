"""End-to-end fixtures: the tiny model served by a real uvicorn process; the demo model built by its own recipe."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from demo_build import DemoBuild

from labelserve_tools.local_server import ServerProcess, start_server


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoBuild:
    """The demo recipe from nothing (synthetic data -> training -> export), once per session: the demo test checks
    what it serves; the label-monitoring tests need a model that has learnt what each label looks like."""
    from export.demo import build_demo_model

    root = tmp_path_factory.mktemp("demo")
    started = time.monotonic()
    bundle = build_demo_model(root / "models", root / "work", show_progress=False)
    return DemoBuild(repository=root / "models", workdir=root / "work",
                     data_dir=next((root / "work").glob("data-*")), bundle=bundle,
                     build_minutes=(time.monotonic() - started) / 60)


@pytest.fixture(scope="module")
def server(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`python -m service` on the tiny model; a 50 ms batching window so concurrent requests share batches."""
    running = start_server(model_repository, tmp_path_factory.mktemp("server"), max_queue_delay_ms="50",
                           max_batch_size="8", max_image_bytes="400000")
    yield running
    running.stop()

"""End-to-end fixtures: the tiny model served by a real uvicorn process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from labelserve.local_server import ServerProcess, start_server


@pytest.fixture(scope="module")
def server(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`python -m service` on the tiny model; a 50 ms batching window so concurrent requests share batches."""
    running = start_server(model_repository, tmp_path_factory.mktemp("server"), max_queue_delay_ms="50",
                           max_batch_size="8", max_image_bytes="400000")
    yield running
    running.stop()

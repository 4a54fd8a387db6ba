"""A new version written into the repository of a running server is swapped in under load with zero failed requests."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from labelserve_tools.local_server import start_server
from tests.service.service_testing import copy_model

pytestmark = pytest.mark.e2e

Images = list[tuple[str, bytes]]


def test_reload_under_load_fails_no_request(model_repository: Path, tmp_path: Path, val_jpegs: Images) -> None:
    repository = tmp_path / "repository"
    source = model_repository / "tiny" / "1"
    copy_model(source, repository, "tiny", 1)
    server = start_server(repository, tmp_path, repository_poll_s="0.2", max_queue_delay_ms="2")
    statuses: Counter[int] = Counter()
    versions: Counter[int] = Counter()
    stop = threading.Event()

    def client(offset: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            index = offset
            while not stop.is_set():
                name, data = val_jpegs[index % len(val_jpegs)]
                index += 1
                response = http.post("/predict", files=[("files", (name, data, "image/jpeg"))])
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    versions[response.json()["version"]] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        copy_model(source, repository, "tiny", 2)  # what `labelserve export` does: a new version folder
        deadline = time.monotonic() + 30
        while versions[2] < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        server.stop()
    assert set(statuses) == {200}, f"{statuses}\n{server.log()}"
    assert versions[1] > 0 and versions[2] >= 20, versions
    assert "unloaded tiny v1" in server.log()

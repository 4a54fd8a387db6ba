"""Deploy-test fixtures: the real tools (promtool, prometheus) and a real Prometheus server on a free port."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from deploy_tools import free_port, tool


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Start a real Prometheus scraping one target every second; yields a function target -> query URL base."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(target: str) -> str:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: labelserve\n"
                          f"    static_configs:\n      - targets: ['{target}']\n", encoding="utf-8")
        log = (tmp_path / "prometheus.log").open("wb")
        processes.append(subprocess.Popen(
            [tool("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    return url
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus did not become ready:\n{(tmp_path / 'prometheus.log').read_text()}")

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=30)



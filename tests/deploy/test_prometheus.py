"""Prometheus for real: promtool validates the shipped config and rules and runs the rule unit tests, and a real
Prometheus server scrapes a real labelserve process (one process, or two workers behind one port) and answers a PromQL
query with its request count."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from deploy_tools import query, tool

from labelserve.local_server import start_server

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
Images = list[tuple[str, bytes]]


@pytest.mark.parametrize("command", [["check", "config", "prometheus.yml"], ["check", "rules", "rules.yml"],
                                     ["test", "rules", "rules_test.yml"]])
def test_promtool_accepts_the_shipped_files(command: list[str]) -> None:
    result = subprocess.run([tool("promtool"), *command], cwd=PROMETHEUS_DIR, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_real_prometheus_scrapes_the_request_count(model_repository: Path, tmp_path: Path, val_jpegs: Images,
                                                     prometheus_for: Callable[[str], str], workers: str) -> None:
    """With two workers each scrape reaches one of them, and still counts the requests both answered."""
    server = start_server(model_repository, tmp_path, repository_poll_s="0", workers=workers)
    try:
        prometheus = prometheus_for(server.url.removeprefix("http://"))
        sent = 7
        for name, data in val_jpegs[:sent]:
            response = httpx.post(f"{server.url}/predict", files=[("files", (name, data, "image/jpeg"))], timeout=30)
            assert response.status_code == 200
        promql = 'sum(labelserve_requests_total{route="/predict", status="200"})'
        deadline, value = time.monotonic() + 30, None
        while time.monotonic() < deadline and value != sent:
            value = query(prometheus, promql)
            time.sleep(0.5)
        assert value == sent, f"{promql} = {value}, expected {sent}"
        time.sleep(3)  # three more scrapes, each answered by one worker alone
        assert query(prometheus, promql) == sent
        assert query(prometheus, "sum(labelserve_workers)") == int(workers)
        assert query(prometheus, 'up{job="labelserve"}') == 1
    finally:
        server.stop()

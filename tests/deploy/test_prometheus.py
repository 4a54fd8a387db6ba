"""Prometheus for real: promtool validates the shipped config and rules and runs the rule unit tests, and a real
Prometheus server scrapes a real labelserve process and answers a PromQL query with its request count."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from labelserve.local_server import start_server

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
Images = list[tuple[str, bytes]]


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: `make test` installs it (Debian package `prometheus`)")
    return found


@pytest.mark.parametrize("command", [["check", "config", "prometheus.yml"], ["check", "rules", "rules.yml"],
                                     ["test", "rules", "rules_test.yml"]])
def test_promtool_accepts_the_shipped_files(command: list[str]) -> None:
    result = subprocess.run([_tool("promtool"), *command], cwd=PROMETHEUS_DIR, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Start a real Prometheus scraping one target every second; yields a function target -> query URL base."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(target: str) -> str:
        port = _free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: labelserve\n"
                          f"    static_configs:\n      - targets: ['{target}']\n", encoding="utf-8")
        log = (tmp_path / "prometheus.log").open("wb")
        processes.append(subprocess.Popen(
            [_tool("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
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


def _query(prometheus: str, promql: str) -> float | None:
    data = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=10).json()
    assert data["status"] == "success", data
    results = data["data"]["result"]
    return float(results[0]["value"][1]) if results else None


def test_a_real_prometheus_scrapes_the_request_count(model_repository: Path, tmp_path: Path, val_jpegs: Images,
                                                     prometheus_for: Callable[[str], str]) -> None:
    server = start_server(model_repository, tmp_path, repository_poll_s="0")
    try:
        prometheus = prometheus_for(server.url.removeprefix("http://"))
        sent = 7
        for name, data in val_jpegs[:sent]:
            response = httpx.post(f"{server.url}/predict", files=[("files", (name, data, "image/jpeg"))], timeout=30)
            assert response.status_code == 200
        promql = 'sum(labelserve_requests_total{route="/predict", status="200"})'
        deadline, value = time.monotonic() + 30, None
        while time.monotonic() < deadline and value != sent:
            value = _query(prometheus, promql)
            time.sleep(0.5)
        assert value == sent, f"{promql} = {value}, expected {sent}"
        assert _query(prometheus, 'up{job="labelserve"}') == 1
    finally:
        server.stop()

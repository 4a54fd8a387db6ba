"""Prometheus for real: promtool validates the shipped config and rules and runs the rule unit tests, and a real
Prometheus server scrapes a real labelserve process (one process, or two workers behind one port) and answers a PromQL
query with its request count."""

from __future__ import annotations

import io
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from deploy_tools import query, tool
from PIL import Image

from labelserve_tools.local_server import start_server

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


def test_a_real_prometheus_fires_the_label_drift_alert_for_the_drifted_labels_only(
        model_repository: Path, tmp_path: Path, prometheus_for: Callable[..., str]) -> None:
    """The shipped alert expression on series scraped from a real server whose answers drifted (grey images where
    the model was validated on scenes). Its `for: 15m` is promtool's to test (rules_test.yml); here it is 0 s."""
    shipped = (PROMETHEUS_DIR / "rules.yml").read_text(encoding="utf-8")
    assert "        for: 15m\n" in shipped
    alert = shipped.index("- alert: LabelserveLabelDrift")
    rules = tmp_path / "rules.yml"
    rules.write_text(shipped[:alert] + shipped[alert:].replace("for: 15m", "for: 0s", 1), encoding="utf-8")
    server = start_server(model_repository, tmp_path, repository_poll_s="0", drift_min_images="20",
                          monitor_refresh_s="0.5")
    try:
        prometheus = prometheus_for(server.url.removeprefix("http://"), rules)
        grey = []
        for value in range(0, 250, 8):
            out = io.BytesIO()
            Image.new("RGB", (64, 64), (value, value, value)).save(out, format="JPEG")
            grey.append(("files", (f"grey{value}.jpg", out.getvalue(), "image/jpeg")))
        assert httpx.post(f"{server.url}/predict", files=grey, timeout=60).status_code == 200
        flagged = httpx.get(f"{server.url}/v2/models/tiny/stats", timeout=10).json()["model_stats"][0][
            "label_stats"]["flagged"]
        assert flagged, "grey images should move some label of the tiny model past the threshold"
        deadline, firing = time.monotonic() + 60, set()
        while time.monotonic() < deadline and firing != set(flagged):
            alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
            firing = {a["labels"]["label"] for a in alerts
                      if a["labels"]["alertname"] == "LabelserveLabelDrift" and a["state"] == "firing"}
            time.sleep(0.5)
        assert firing == set(flagged), (firing, flagged)
    finally:
        server.stop()

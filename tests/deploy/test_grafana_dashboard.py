"""The Grafana dashboard: generated JSON is current, every metric its PromQL names exists in a real `/metrics`
scrape of the service (GPU gauges only where NVML works), and every query is valid PromQL to a real Prometheus."""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import httpx
import yaml
from deploy_tools import query
from prometheus_client.parser import text_string_to_metric_families

from bench.repositories import copy_version, write_model_config
from labelserve_tools.local_server import start_server

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
_METRIC = re.compile(r"\blabelserve_[a-z0-9_]+")
_NVML_ONLY = ("labelserve_gpu_",)
Images = list[tuple[str, bytes]]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_dashboard", GRAFANA / "build_dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _expressions() -> list[str]:
    dashboard = json.loads((GRAFANA / "dashboards" / "labelserve.json").read_text(encoding="utf-8"))
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_committed_json_is_what_the_generator_writes() -> None:
    committed = json.loads((GRAFANA / "dashboards" / "labelserve.json").read_text(encoding="utf-8"))
    assert committed == json.loads(json.dumps(_generator().dashboard())), "run deploy/grafana/build_dashboard.py"


def test_panels_cover_what_operators_watch_and_use_the_provisioned_datasource() -> None:
    dashboard = _generator().dashboard()
    titles = " | ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for topic in ("throughput", "latency", "queue wait", "batch size", "rejections", "inference time", "queue depth",
                  "model versions", "gpu memory", "gpu utilisation", "connections", "file descriptors",
                  "drifted labels", "baseline positive rate", "shadow", "feedback received", "precision and recall"):
        assert topic in titles, topic
    provisioned = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = provisioned["datasources"][0]["uid"]
    queried = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert {panel["datasource"]["uid"] for panel in queried} == {uid}


def test_every_metric_exists_in_a_real_scrape_and_every_query_parses(
    model_repository: Path, tmp_path: Path, val_jpegs: Images, prometheus_for: Callable[[str], str],
) -> None:
    root = tmp_path / "repository"  # two versions, the second a shadow: every panel's series exist
    for version in (1, 2):
        copy_version(model_repository / "tiny" / "1", root, version)
    write_model_config(root, {"version_policy": {"latest": 2}, "default_version": 1, "shadow": {"version": 2}})
    server = start_server(root, tmp_path, repository_poll_s="0", drift_min_images="1", monitor_refresh_s="0.2")
    try:
        name, data = val_jpegs[0]
        ok = httpx.post(f"{server.url}/predict", files=[("files", (name, data, "image/jpeg"))], timeout=30)
        ok.raise_for_status()
        httpx.post(f"{server.url}/predict", files=[("files", ("notes.txt", b"text", "text/plain"))], timeout=30)
        infer = {"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                             "data": [base64.b64encode(data).decode()]}]}
        httpx.post(f"{server.url}/v2/models/tiny/infer", json=infer, timeout=30).raise_for_status()
        httpx.get(f"{server.url}/v2/models/tiny", timeout=30).raise_for_status()
        answer_id = ok.json()["results"][0]["id"]
        first_label = ok.json()["results"][0]["labels"][0]["name"]
        httpx.post(f"{server.url}/v2/models/tiny/feedback", json={"id": answer_id, "labels": [first_label]},
                   timeout=30).raise_for_status()
        time.sleep(1.0)  # a refresh of the per-label gauges
        samples = [sample for family in text_string_to_metric_families(httpx.get(f"{server.url}/metrics").text)
                   for sample in family.samples]
        scraped = {sample.name for sample in samples}
        routes = {sample.labels["route"] for sample in samples if sample.name == "labelserve_requests_total"}
        selected = {route for route in routes if re.fullmatch(_generator().INFERENCE_ROUTES, route)}
        assert selected == {"/predict", "/v2/models/{name}/infer"}, routes  # the latency panel sees both, only them
        named = {name for expr in _expressions() for name in _METRIC.findall(expr)}
        missing = {name for name in named - scraped if not name.startswith(_NVML_ONLY)}
        assert not missing, f"the dashboard queries metrics the service does not expose: {sorted(missing)}"

        prometheus = prometheus_for(server.url.removeprefix("http://"))
        time.sleep(2.5)  # a couple of scrapes
        for expr in _expressions():
            query(prometheus, expr.replace("$__rate_interval", "1m").replace("$model", ".*"))
    finally:
        server.stop()

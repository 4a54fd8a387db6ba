"""docker-compose files, checked without a Docker engine: valid against the Compose Specification's JSON schema
(tests/deploy/schemas/compose_spec.json, from the docker-compose 1.29.2 package, Apache-2.0), yamllint clean, and
wired together: Prometheus gets the shipped config, Grafana the provisioning and dashboard folders its provider
points at, the GPU override reserves a GPU, and export is a one-shot profile writing into the shared models volume."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((Path(__file__).parent / "schemas" / "compose_spec.json").read_text(encoding="utf-8"))
FILES = ("docker-compose.yml", "docker-compose.gpu.yml", "docker-compose.postgres.yml")


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", FILES)
def test_valid_against_the_compose_specification(name: str) -> None:
    jsonschema.Draft201909Validator(SCHEMA).validate(_load(name))


def test_yamllint_is_clean_on_every_yaml_file() -> None:
    result = subprocess.run([sys.executable, "-m", "yamllint", "--strict", "."], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path (or volume name) of a service's volumes."""
    out = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        out[target] = source
    return out


def test_services_are_wired_together() -> None:
    compose = _load("docker-compose.yml")
    services = compose["services"]
    labelserve, prometheus, grafana, export = (services[n] for n in ("labelserve", "prometheus", "grafana", "export"))

    assert labelserve["build"]["target"] == "cpu" and "8000:8000" in labelserve["ports"]
    assert _mounts(labelserve)["/models"] == "models" and labelserve["volumes"][0].endswith(":ro")
    assert "/readyz" in " ".join(labelserve["healthcheck"]["test"])
    grace = int(labelserve["stop_grace_period"].removesuffix("s"))
    assert grace > float(labelserve["environment"]["LABELSERVE_DRAIN_TIMEOUT_S"])

    prometheus_dir = ROOT / _mounts(prometheus)["/etc/prometheus"]
    assert (prometheus_dir / "prometheus.yml").is_file() and (prometheus_dir / "rules.yml").is_file()
    scrape = yaml.safe_load((prometheus_dir / "prometheus.yml").read_text())["scrape_configs"][0]
    assert scrape["static_configs"][0]["targets"] == ["labelserve:8000"]

    grafana_mounts = _mounts(grafana)
    provisioning = ROOT / grafana_mounts["/etc/grafana/provisioning"]
    provider = yaml.safe_load((provisioning / "dashboards" / "labelserve.yml").read_text())["providers"][0]
    dashboards = ROOT / grafana_mounts[provider["options"]["path"]]
    assert (dashboards / "labelserve.json").is_file()
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"

    assert export["profiles"] == ["export"] and export["restart"] == "no"
    assert _mounts(export)["/models"] == "models"
    assert set(compose["volumes"]) >= {"models", "feedback"}
    store = labelserve["environment"]["LABELSERVE_STORE_URL"]  # on the writable volume, not the read-only root
    assert store == "sqlite:////var/lib/labelserve/feedback.sqlite3" and _mounts(labelserve)["/var/lib/labelserve"]


def test_the_postgres_override_moves_the_store_to_postgresql() -> None:
    override = _load("docker-compose.postgres.yml")["services"]
    postgres, labelserve = override["postgres"], override["labelserve"]
    url = labelserve["environment"]["LABELSERVE_STORE_URL"]
    assert url.startswith("postgresql://labelserve:") and url.endswith("@postgres:5432/labelserve")
    assert labelserve["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert postgres["environment"]["POSTGRES_DB"] == "labelserve" and "pg_isready" in postgres["healthcheck"]["test"]
    assert _mounts(postgres)["/var/lib/postgresql/data"] == "postgres-data"


def test_the_gpu_override_reserves_a_gpu_for_the_gpu_image() -> None:
    override = _load("docker-compose.gpu.yml")["services"]["labelserve"]
    assert override["build"]["target"] == "gpu"
    (device,) = override["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "cuda" in override["environment"]["LABELSERVE_EXECUTION_PROVIDERS"]


@pytest.mark.parametrize("name", FILES)
def test_a_plain_up_needs_no_variable(name: str) -> None:
    """Compose interpolates every service before it picks those to run, so a required `${VAR:?}` anywhere (even in
    the export profile) would stop `docker compose up` itself; required inputs are checked when their service runs."""
    text = json.dumps(_load(name))  # the values, not the comments
    required = re.findall(r"(?<!\$)\$\{[A-Za-z_][A-Za-z0-9_]*:?\?[^}]*\}", text)
    assert not required, f"{name} requires {required} for every command"


def test_export_checks_its_paths_when_it_runs() -> None:
    export = _load("docker-compose.yml")["services"]["export"]
    assert {"CHECKPOINT", "PARITY_IMAGES", "MODEL_NAME"} <= set(export["environment"])
    script = export["entrypoint"][-1]
    assert 'test -n "$$CHECKPOINT"' in script and "exit 2" in script and "exec labelserve export" in script

"""k8s/kserve/: the ServingRuntime and the InferenceService examples, validated against KServe's own CRD schemas
(vendored from a KServe release, tests/deploy/schemas/kserve/SOURCE.md) with unknown fields refused, and wired to the
service: the runtime serves the model format the examples ask for over protocol v2, with settings the service accepts,
on the port it listens on, probed on routes the real app has; the KEDA query names metrics that a real scrape of the
service has, and parses on a real Prometheus."""

from __future__ import annotations

import copy
import functools
import hashlib
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from deploy_tools import assert_valid_kubernetes_object, query
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from labelserve_tools.local_server import start_server
from service.app import create_app
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
KSERVE = ROOT / "k8s" / "kserve"
SCHEMAS = Path(__file__).parent / "schemas" / "kserve"
KSERVE_VERSION = "v0.20.0"
CRDS = {"ServingRuntime": "serving.kserve.io_servingruntimes.yaml",
        "InferenceService": "serving.kserve.io_inferenceservices.yaml"}
MODEL_MOUNT = "/mnt/models"  # where KServe mounts storageUri (pkg/constants DefaultModelLocalMountPath)
_METRIC = re.compile(r"\blabelserve_[a-z0-9_]+")
Images = list[tuple[str, bytes]]


def _documents() -> list[dict[str, Any]]:
    return [doc for path in sorted(KSERVE.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in _documents() if doc["kind"] == kind]


def _strict(schema: Any) -> Any:
    """The API server prunes unknown fields silently, so a misspelt key would deploy as a no-op; refuse them, as
    `kubectl apply --validate=strict` does, wherever the schema lists the fields and does not keep unknown ones."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items()}
    if ("properties" in strict and "additionalProperties" not in strict
            and not strict.get("x-kubernetes-preserve-unknown-fields")):
        strict["additionalProperties"] = False
    return strict


@functools.cache
def _validator(kind: str, api_version: str) -> jsonschema.Draft4Validator:
    """The CRD's OpenAPI v3 schema for `api_version` (a served version), made strict."""
    crd = yaml.load((SCHEMAS / CRDS[kind]).read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    group, version = api_version.split("/")
    assert crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version and v["served"]]
    return jsonschema.Draft4Validator(_strict(served["schema"]["openAPIV3Schema"]))


def _errors(obj: dict[str, Any]) -> list[str]:
    validator = _validator(obj["kind"], obj["apiVersion"])
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(obj)]


def test_the_vendored_crds_are_the_recorded_release() -> None:
    source = (SCHEMAS / "SOURCE.md").read_text(encoding="utf-8")
    assert f"release tag `{KSERVE_VERSION}`" in source
    for name in CRDS.values():
        digest = hashlib.sha256((SCHEMAS / name).read_bytes()).hexdigest()
        assert re.search(rf"`{re.escape(name)}`.*`{digest}`", source), f"{name} differs from SOURCE.md's sha256"


def test_every_manifest_is_valid_against_kserves_schemas() -> None:
    documents = _documents()
    assert {doc["kind"] for doc in documents} == {"ServingRuntime", "InferenceService", "PersistentVolumeClaim"}
    for doc in documents:
        name = f"{doc['kind']} {doc['metadata']['name']}"
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"]), name
        if doc["kind"] in CRDS:
            assert not _errors(doc), f"{name}: {_errors(doc)}"
        else:
            assert_valid_kubernetes_object(doc)


@pytest.mark.parametrize(("kind", "path", "value"), [
    ("InferenceService", ("spec", "predictor", "model", "storageURI"), "pvc://typo"),  # storageUri misspelt
    ("InferenceService", ("spec", "predictor", "minReplicas"), "one"),
    ("ServingRuntime", ("spec", "containers", 0, "ports", 0, "containerPort"), "8080"),
    ("ServingRuntime", ("spec", "supportedModelFormats", 0, "autoselect"), True),
])
def test_the_validation_catches_typos_and_wrong_types(kind: str, path: tuple[str | int, ...], value: Any) -> None:
    broken = copy.deepcopy(_of_kind(kind)[0])
    target: Any = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert _errors(broken), f"{'.'.join(map(str, path))} = {value!r} was accepted"


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


def test_the_runtime_serves_what_the_examples_ask_for(monkeypatch: pytest.MonkeyPatch) -> None:
    (runtime,) = _of_kind("ServingRuntime")
    (container,) = runtime["spec"]["containers"]
    formats = {(f["name"], f.get("version")) for f in runtime["spec"]["supportedModelFormats"]}
    for service in _of_kind("InferenceService"):
        model = service["spec"]["predictor"]["model"]
        assert model["runtime"] == runtime["metadata"]["name"]
        name, version = model["modelFormat"]["name"], model["modelFormat"].get("version")
        assert any(name == n and version in (None, v) for n, v in formats), f"no runtime format for {name} {version}"
        assert model["protocolVersion"] in runtime["spec"]["protocolVersions"] == ["v2", "grpc-v2"]
        assert model["storageUri"].startswith("pvc://")
        if model["protocolVersion"] == "grpc-v2":  # Knative sends gRPC to the one port named h2c: the gRPC port
            assert [(p["name"], p["containerPort"]) for p in model["ports"]] == [("h2c", int(_env(container)[
                "LABELSERVE_GRPC_PORT"]))]

    env = _env(container)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()  # the service would start with these settings (validation errors fail here)
    assert set(env) <= {f"LABELSERVE_{field.upper()}" for field in Settings.model_fields}
    assert str(settings.model_repository) == MODEL_MOUNT and settings.host == "0.0.0.0"
    ports = {port["containerPort"] for port in container["ports"]}
    assert ports == {settings.port} and settings.grpc and settings.grpc_port == 9000
    client = TestClient(create_app(settings))  # no lifespan: nothing loads, but every route answers
    probed = [container[probe]["httpGet"] for probe in ("readinessProbe", "livenessProbe")]
    for get in probed:
        assert get["port"] == settings.port
    for path in [get["path"] for get in probed] + [runtime["spec"]["annotations"]["prometheus.kserve.io/path"]]:
        assert client.get(path).status_code != 404, f"the service has no route {path}"

    chart = yaml.safe_load((ROOT / "k8s" / "labelserve" / "Chart.yaml").read_text(encoding="utf-8"))
    assert container["image"] == f"labelserve:{chart['appVersion']}-gpu"  # the tag the Helm chart deploys
    assert container["securityContext"]["runAsUser"] == 10001  # the Dockerfile's USER
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"


def _keda_queries() -> list[str]:
    return [metric["external"]["metric"]["query"] for service in _of_kind("InferenceService")
            for metric in service["spec"]["predictor"].get("autoScaling", {}).get("metrics", [])
            if metric["type"] == "External"]


def test_the_keda_query_names_real_metrics_and_parses(model_repository: Path, tmp_path: Path, val_jpegs: Images,
                                                      prometheus_for: Callable[[str], str]) -> None:
    (keda_query,) = _keda_queries()
    server = start_server(model_repository, tmp_path, repository_poll_s="0")
    try:
        name, data = val_jpegs[0]
        answer = httpx.post(f"{server.url}/predict", files=[("files", (name, data, "image/jpeg"))], timeout=30)
        answer.raise_for_status()
        scraped = {sample.name for family in text_string_to_metric_families(httpx.get(f"{server.url}/metrics").text)
                   for sample in family.samples}
        named = set(_METRIC.findall(keda_query))
        assert named and named <= scraped, f"not in a real scrape: {sorted(named - scraped)}"
        prometheus = prometheus_for(server.url.removeprefix("http://"))
        time.sleep(2.5)  # a couple of scrapes
        query(prometheus, keda_query)
    finally:
        server.stop()

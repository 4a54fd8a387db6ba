"""The Helm chart rendered by real Helm (tests/deploy/helm_render.py, helm-sdkpy in `.venv-helm`) for default values
and for GPU + autoscaling values, every object validated against the Kubernetes API models of the `kubernetes`
package (no field the API does not know, none missing that it requires), and the wiring checked."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from deploy_tools import assert_valid_kubernetes_object

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "k8s" / "labelserve"
HELM_PYTHON = ROOT / ".venv-helm" / "bin" / "python"
GPU_AUTOSCALING = {"gpu": {"enabled": True}, "autoscaling": {"enabled": True, "metric": "queueTime"},
                   "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus"}},
                   "apiKey": {"existingSecret": "labelserve-key"}}


def _render(values: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    if not HELM_PYTHON.exists():
        pytest.fail("the Helm environment is missing: `make test` creates .venv-helm (Python 3.12 + helm-sdkpy)")
    values_file = tmp_path / "values.json"
    values_file.write_text(json.dumps(values), encoding="utf-8")
    return subprocess.run([str(HELM_PYTHON), str(ROOT / "tests" / "deploy" / "helm_render.py"), str(CHART),
                           str(values_file)], capture_output=True, text=True, timeout=180, check=False)


def _objects(values: dict[str, Any], tmp_path: Path) -> dict[str, dict[str, Any]]:
    result = _render(values, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    objects = json.loads(result.stdout)
    by_kind = {obj["kind"]: obj for obj in objects}
    assert len(by_kind) == len(objects), "one object per kind expected"
    return by_kind


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_default_values_render_a_hardened_cpu_deployment(tmp_path: Path) -> None:
    objects = _objects({}, tmp_path)
    assert set(objects) == {"Deployment", "Service", "ConfigMap", "PersistentVolumeClaim", "PodDisruptionBudget"}
    for obj in objects.values():
        assert_valid_kubernetes_object(obj)
    deployment, config = objects["Deployment"], objects["ConfigMap"]["data"]
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    assert container["image"] == "labelserve:0.1.0-cpu"
    assert "nvidia.com/gpu" not in json.dumps(container["resources"])
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["readOnlyRootFilesystem"]
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    drain = int(config["LABELSERVE_DRAIN_TIMEOUT_S"])
    assert pod["terminationGracePeriodSeconds"] > drain + container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert container["envFrom"][0]["configMapRef"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    assert config["LABELSERVE_MODEL_REPOSITORY"] == "/models"
    claim = {v["name"]: v for v in pod["volumes"]}["models"]["persistentVolumeClaim"]["claimName"]
    assert claim == objects["PersistentVolumeClaim"]["metadata"]["name"]
    # two pods on any two nodes share the claim, each read-only (export writes into it)
    assert objects["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert {m["name"]: m for m in container["volumeMounts"]}["models"]["readOnly"] is True
    assert deployment["spec"]["replicas"] == 2
    # answers and feedback: each pod's own SQLite file on a writable emptyDir, the root being read-only
    assert {v["name"]: v for v in pod["volumes"]}["store"] == {"name": "store", "emptyDir": {}}
    assert {m["name"]: m for m in container["volumeMounts"]}["store"]["mountPath"] == "/var/lib/labelserve"
    assert "env" not in container
    service = objects["Service"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"] == "http"
    assert objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]


def test_gpu_and_autoscaling_values(tmp_path: Path) -> None:
    objects = _objects(GPU_AUTOSCALING, tmp_path)
    assert {"HorizontalPodAutoscaler", "ServiceMonitor"} <= set(objects)
    for kind, obj in objects.items():
        if kind != "ServiceMonitor":
            assert_valid_kubernetes_object(obj)
    deployment = objects["Deployment"]
    container = _container(deployment)
    assert container["image"] == "labelserve:0.1.0-gpu"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert objects["ConfigMap"]["data"]["LABELSERVE_EXECUTION_PROVIDERS"] == "tensorrt,cuda,cpu"
    assert container["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "labelserve-key"
    assert "replicas" not in deployment["spec"]  # the HPA owns the replica count
    hpa = objects["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["target"]["averageValue"] == "50m"
    monitor = objects["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert monitor["spec"]["selector"]["matchLabels"] == objects["Service"]["spec"]["selector"]
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]


def test_cpu_autoscaling_and_models_from_an_init_container(tmp_path: Path) -> None:
    objects = _objects({"autoscaling": {"enabled": True},
                        "modelRepository": {"initContainer": {"enabled": True, "image": "busybox:1.36",
                                                              "command": ["sh", "-c", "cp -r /src/. /models"]}}},
                       tmp_path)
    assert "PersistentVolumeClaim" not in objects
    assert_valid_kubernetes_object(objects["Deployment"])
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["volumeMounts"][0]["mountPath"] == "/models"
    assert {v["name"]: v for v in pod["volumes"]}["models"] == {"name": "models", "emptyDir": {}}
    (metric,) = objects["HorizontalPodAutoscaler"]["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["averageUtilization"] == 70


@pytest.mark.parametrize("values", [{"service": {"port": "eighty"}}, {"autoscaling": {"metric": "memory"}},
                                    {"config": {"NOT_LABELSERVE": "1"}}, {"unknownKey": True}])
def test_values_schema_refuses_nonsense(values: dict[str, Any], tmp_path: Path) -> None:
    result = _render(values, tmp_path)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr


_SINGLE_NODE = {"modelRepository": {"persistentVolumeClaim": {"accessModes": ["ReadWriteOnce"]}}}


@pytest.mark.parametrize("values", [
    {**_SINGLE_NODE, "replicaCount": 2},
    {**_SINGLE_NODE, "replicaCount": 1, "autoscaling": {"enabled": True}},
    {"replicaCount": 3, "modelRepository": {"persistentVolumeClaim": {"accessModes": ["ReadWriteOncePod"]}}},
], ids=["two-replicas", "autoscaling", "read-write-once-pod"])
def test_several_pods_on_a_single_node_claim_are_refused(values: dict[str, Any], tmp_path: Path) -> None:
    result = _render(values, tmp_path)
    assert result.returncode != 0, "a ReadWriteOnce claim cannot be mounted by pods on several nodes"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert "allowSingleNodeAccessMode" in result.stderr, result.stderr[-2000:]  # the error names the way out


@pytest.mark.parametrize("values", [
    {**_SINGLE_NODE, "replicaCount": 1},
    {"replicaCount": 2, "modelRepository": {"persistentVolumeClaim": {"accessModes": ["ReadWriteOnce"],
                                                                      "allowSingleNodeAccessMode": True}}},
    {"replicaCount": 2, "modelRepository": {"persistentVolumeClaim": {"accessModes": ["ReadOnlyMany"]}}},
    {**_SINGLE_NODE, "autoscaling": {"enabled": True},
     "modelRepository": {"initContainer": {"enabled": True, "image": "busybox:1.36", "command": ["true"]}}},
], ids=["one-replica", "said-explicitly", "read-only-many", "per-pod-copy"])
def test_single_node_claims_render_where_they_work(values: dict[str, Any], tmp_path: Path) -> None:
    objects = _objects(values, tmp_path)
    assert_valid_kubernetes_object(objects["Deployment"])
    claim = objects.get("PersistentVolumeClaim")
    expected = values["modelRepository"].get("persistentVolumeClaim", {}).get("accessModes")
    if claim is not None:
        assert claim["spec"]["accessModes"] == expected


def test_a_shared_store_comes_from_a_secret(tmp_path: Path) -> None:
    """Several pods share answers and feedback through PostgreSQL, whose URL (with its password) is a Secret's."""
    objects = _objects({"store": {"existingSecret": "labelserve-store"}, "apiKey": {"existingSecret": "k"}}, tmp_path)
    env = {item["name"]: item["valueFrom"]["secretKeyRef"] for item in _container(objects["Deployment"])["env"]}
    assert env == {"LABELSERVE_STORE_URL": {"name": "labelserve-store", "key": "url"},
                   "LABELSERVE_API_KEY": {"name": "k", "key": "api-key"}}
    assert_valid_kubernetes_object(objects["Deployment"])

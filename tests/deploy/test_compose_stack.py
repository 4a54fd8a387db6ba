"""docker-compose.yml, run for real by podman-compose (Debian's 1.0.3) on podman, inside a network namespace of its
own (so its published ports 8000 and 9090 cannot clash with anything on this host).

What runs is the compose file as written, plus an override that only swaps images: the labelserve service is built by
compose from this checkout (`podman-compose build`, on this host's network, since the build needs PyPI) on the
stand-in Python base, and Prometheus is a stand-in image around Debian's prometheus 2.42 (prom/prometheus cannot be
pulled here); both get the compose file's own command, environment, volumes, ports, read-only root, tmpfs and
capabilities. Grafana cannot run here: grafana/grafana is on Docker Hub only and no registry this project reaches
packages Grafana, so its test checks what podman-compose would start it with (`--dry-run`): the provisioning and
dashboards mounted where its environment points. Marked `image`.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from containers import (
    IMAGE_TEST_TIMEOUT_S,
    PODMAN,
    BuiltImage,
    NetworkNamespace,
    build_ca_volumes,
    podman_limits,
    remove_image,
    require_container_tools,
    run_checked,
    unique_name,
)
from standin import ensure_standin_prometheus_image

pytestmark = [pytest.mark.image, pytest.mark.timeout(IMAGE_TEST_TIMEOUT_S)]

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
TOLERANCE = 1e-5
Reference = Callable[[bytes], dict[str, float]]
Images = list[tuple[str, bytes]]
_log = logging.getLogger(__name__)


@dataclass
class Stack:
    namespace: NetworkNamespace
    project: str
    command: list[str]  # podman-compose with the project, files and podman options
    log: Path

    def url(self, port: int) -> str:
        return f"http://{self.namespace.address}:{port}"

    def compose(self, *args: str, timeout_s: float = 900, env: dict[str, str] | None = None,
                inside: bool = True) -> subprocess.CompletedProcess[str]:
        """podman-compose with `args`, in the stack's network namespace (`inside=False`: on this host's network, which
        a build needs to reach PyPI). podman-compose 1.0.3 exits 0 even when a podman command fails: check results."""
        prefix = self.namespace.enter() if inside else []
        result = subprocess.run([*prefix, *self.command, *args], capture_output=True, text=True,
                                timeout=timeout_s, check=False, cwd=ROOT, env=env)
        with self.log.open("a", encoding="utf-8") as log:
            log.write(f"$ podman-compose {' '.join(args)}\n{result.stdout}\n{result.stderr}\n")
        return result

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"


def _override(labelserve_tag: str, base: str, prometheus: str) -> dict[str, Any]:
    """Only images change: the service is built from this checkout on the stand-in base; export reuses that image
    (it only needs to reach its path check here); Prometheus is the stand-in."""
    return {"services": {
        "labelserve": {"image": labelserve_tag, "build": {"args": {"PYTHON_IMAGE": base}}},
        "export": {"image": labelserve_tag},
        "prometheus": {"image": prometheus},
    }}


def _fill_models_volume(project: str, model_repository: Path) -> None:
    """The compose file's `models` volume, created ahead of compose with the tiny model in it, readable by UID 10001
    (as `labelserve export` run by the export service would leave it)."""
    volume = f"{project}_models"
    run_checked(["podman", "volume", "create", volume])
    mountpoint = Path(run_checked(["podman", "volume", "inspect", "--format", "{{.Mountpoint}}", volume]).strip())
    shutil.copytree(model_repository, mountpoint, dirs_exist_ok=True)
    for path in [mountpoint, *mountpoint.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.fixture(scope="module")
def stack(cpu_image: BuiltImage, model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack, up. It asks for `cpu_image` first so that compose's own build of the same Dockerfile finds every
    layer cached."""
    require_container_tools("podman-compose", "nsenter", "ip", "prometheus")
    base = cpu_image.base
    started = time.monotonic()
    prometheus = ensure_standin_prometheus_image()
    prometheus_s = time.monotonic() - started
    tmp = tmp_path_factory.mktemp("compose")
    project = unique_name("lstest").replace("-", "")
    tag = f"localhost/{project}-labelserve:cpu"
    override = tmp / "override.yml"
    override.write_text(yaml.safe_dump(_override(tag, base, prometheus)), encoding="utf-8")
    build_args = ["--isolation", "chroot", "--format", "docker", *build_ca_volumes(tmp)]
    command = ["podman-compose", "--project-name", project, "--file", str(ROOT / "docker-compose.yml"),
               "--file", str(override), "--podman-args", shlex.join(PODMAN[1:]),
               "--podman-run-args", shlex.join(podman_limits()), "--podman-build-args", shlex.join(build_args)]
    namespace = NetworkNamespace.create()
    stack = Stack(namespace=namespace, project=project, command=command, log=tmp / "compose.log")
    try:
        _fill_models_volume(project, model_repository)
        started = time.monotonic()
        stack.compose("build", "labelserve", inside=False)  # compose's own build, from this checkout
        build_s = time.monotonic() - started
        _assert_compose_did(["podman", "image", "exists", tag], "build the labelserve image", stack)
        stack.compose("up", "--detach", "--no-build", "labelserve", "prometheus")
        for service in ("labelserve", "prometheus"):
            _assert_compose_did(["podman", "container", "exists", stack.container(service)], f"start {service}", stack)
        _wait_for(lambda: _status(f"{stack.url(8000)}/readyz") == 200, 180,
                  lambda: run_checked(["podman", "logs", stack.container("labelserve")]))
        _log.info("compose stack: prometheus stand-in %.0f s, compose build %.0f s, up until ready %.0f s",
                  prometheus_s, build_s, time.monotonic() - started - build_s)
        yield stack
    finally:
        stack.compose("down", "--volumes", timeout_s=300)
        for volume in ("models", "prometheus-data", "grafana-data"):
            subprocess.run(["podman", "volume", "rm", "--force", f"{project}_{volume}"], capture_output=True,
                           timeout=120, check=False)
        subprocess.run(["podman", "network", "rm", "--force", f"{project}_default"], capture_output=True,
                       timeout=120, check=False)
        namespace.delete()
        remove_image(tag)


def _assert_compose_did(check: list[str], what: str, stack: Stack) -> None:
    if subprocess.run(check, capture_output=True, timeout=60, check=False).returncode != 0:
        raise AssertionError(f"podman-compose did not {what}:\n{stack.log.read_text()[-6000:]}")


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.TransportError:
        return None


def _wait_for(condition: Callable[[], bool], timeout_s: float, explain: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout_s} s\n{explain()}")
        time.sleep(0.5)


def _inspect(container: str) -> dict[str, Any]:
    (info,) = json.loads(run_checked(["podman", "inspect", container]))
    return info


def test_the_service_runs_as_compose_says_and_answers(stack: Stack, val_jpegs: Images, reference: Reference) -> None:
    service = COMPOSE["services"]["labelserve"]
    info = _inspect(stack.container("labelserve"))
    environment = set(info["Config"]["Env"])
    assert {f"{key}={value}" for key, value in service["environment"].items()} <= environment
    host = info["HostConfig"]
    assert host["ReadonlyRootfs"] and "no-new-privileges" in " ".join(host["SecurityOpt"]) and "/tmp" in host["Tmpfs"]
    status = run_checked([*PODMAN, "exec", stack.container("labelserve"), "cat", "/proc/1/status"])
    assert "CapEff:\t0000000000000000" in status and "NoNewPrivs:\t1" in status  # cap_drop: ALL
    models = {mount["Destination"]: mount for mount in info["Mounts"]}["/models"]
    assert models["Name"] == f"{stack.project}_models" and not models["RW"]
    assert info["Config"]["User"] == "10001:10001"

    name, data = val_jpegs[0]
    response = httpx.post(f"{stack.url(8000)}/predict", files=[("files", (name, data, "image/jpeg"))], timeout=60)
    assert response.status_code == 200, response.text
    got = {label["name"]: label["probability"] for label in response.json()["results"][0]["labels"]}
    expected = reference(data)
    assert max(abs(got[label] - expected[label]) for label in expected) <= TOLERANCE


def test_the_compose_healthcheck_passes_inside_the_service(stack: Stack) -> None:
    """The `test` command exactly as docker-compose.yml writes it (podman-compose 1.0.3 mangles a CMD list into one
    shell string, so its own healthcheck is not the one to judge the file by)."""
    kind, *command = COMPOSE["services"]["labelserve"]["healthcheck"]["test"]
    assert kind == "CMD"
    result = subprocess.run([*PODMAN, "exec", stack.container("labelserve"), *command], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    data = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=10).json()
    assert data["status"] == "success", data
    return data["data"]["result"]


def test_prometheus_scrapes_the_service_with_the_shipped_config_and_rules(stack: Stack) -> None:
    prometheus = stack.url(9090)
    _wait_for(lambda: _status(f"{prometheus}/-/ready") == 200, 60)
    # the shipped scrape config names the target `labelserve:8000`: compose's network resolves it
    _wait_for(lambda: [r["value"][1] for r in _query(prometheus, 'up{job="labelserve"}')] == ["1"], 60,
              lambda: httpx.get(f"{prometheus}/api/v1/targets", timeout=10).text)
    assert _query(prometheus, "labelserve_model_info")[0]["metric"]["model"] == "tiny"
    shipped = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules.yml").read_text(encoding="utf-8"))
    loaded = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    assert {group["name"] for group in loaded} == {group["name"] for group in shipped["groups"]}


def test_grafana_would_get_its_provisioning_dashboards_and_environment(stack: Stack) -> None:
    """What podman-compose would start Grafana with (`--dry-run`); the image itself cannot be had here."""
    planned = stack.compose("--dry-run", "up", "--no-build", "grafana")
    (line,) = [line for line in planned.stdout.splitlines()
               if line.startswith(("podman run", "podman create")) and f"--name={stack.container('grafana')}" in line]
    argv = shlex.split(line)
    mounts = dict(argv[i + 1].split(":")[1::-1] for i, arg in enumerate(argv) if arg == "-v")  # target -> source
    env = dict(argv[i + 1].split("=", 1) for i, arg in enumerate(argv) if arg == "-e")
    assert argv[-1] == COMPOSE["services"]["grafana"]["image"]
    provisioning = Path(mounts["/etc/grafana/provisioning"])
    assert (provisioning / "datasources" / "prometheus.yml").is_file()
    provider = yaml.safe_load((provisioning / "dashboards" / "labelserve.yml").read_text())["providers"][0]
    dashboards = Path(mounts[provider["options"]["path"]])
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (dashboards / Path(home).relative_to(provider["options"]["path"])).is_file()
    assert json.loads((dashboards / "labelserve.json").read_text())["panels"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"


def test_export_without_its_paths_stops_with_the_reason(stack: Stack) -> None:
    """The export service's guard, run by compose: no CHECKPOINT/PARITY_IMAGES -> exit 2 and what to set."""
    environment = {k: v for k, v in os.environ.items() if k not in ("CHECKPOINT", "PARITY_IMAGES")}
    result = stack.compose("run", "--rm", "--no-deps", "export", timeout_s=300, env=environment)
    output = result.stdout + result.stderr
    assert "set CHECKPOINT" in output and "exit code: 2" in output, output

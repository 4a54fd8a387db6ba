"""Deploy-test fixtures: the real tools (promtool, prometheus), a real Prometheus server on a free port, and the cpu
image built from this checkout."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from containers import BuiltImage, build_image, require_container_tools, run_checked
from deploy_tools import free_port, tool
from standin import ensure_standin_python_image

ROOT = Path(__file__).resolve().parents[2]
CPU_IMAGE_TAG = "localhost/labelserve-test/cpu:latest"
_log = logging.getLogger(__name__)


@pytest.fixture(scope="session")
def cpu_image(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """`--target cpu` of this checkout's Dockerfile on the stand-in base, built once per session. The tag stays as the
    next run's build cache (untagging would drop its layers); tests use the image's ID."""
    require_container_tools()
    base, base_build_s = ensure_standin_python_image()
    log = tmp_path_factory.mktemp("cpu-image") / "build.log"
    build_s = build_image(ROOT, "cpu", CPU_IMAGE_TAG, {"PYTHON_IMAGE": base}, log)
    image_id = run_checked(["podman", "image", "inspect", "--format", "{{.Id}}", CPU_IMAGE_TAG]).strip()
    _log.info("cpu image built in %.0f s (stand-in base: %s)", build_s,
              f"built in {base_build_s:.0f} s" if base_build_s else "cached")
    return BuiltImage(tag=image_id, base=base, build_s=build_s, base_build_s=base_build_s)


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start a real Prometheus scraping one target every second (and evaluating `rules`, a rule file, as often);
    yields a function (target, rules=None) -> query URL base."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(target: str, rules: Path | None = None) -> str:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        rule_files = f"rule_files:\n  - {rules}\n" if rules is not None else ""
        config.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n" + rule_files +
                          "scrape_configs:\n  - job_name: labelserve\n"
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



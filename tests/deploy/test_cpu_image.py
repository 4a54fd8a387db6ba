"""The Dockerfile's cpu target, built from this checkout and run for real (tests/deploy/containers.py says how).

The base is a stand-in for python:3.11-slim made from Debian's packages (tests/deploy/standin.py), since Docker Hub
is out of reach; everything after `FROM` is this project's Dockerfile, unchanged. The container runs the image's own
CMD as its own USER (10001) with the tiny model bind-mounted read-only at /models, hardened as docker-compose.yml
runs it, and from this host: /readyz turns 200, /predict answers as in-process onnxruntime does (within 1e-5),
tritonclient's binary infer works, /metrics scrapes, the HEALTHCHECK command passes inside it, and `podman stop`
(SIGTERM) answers every accepted request before the container exits 0. Marked `image`: `-m "not image"` skips it.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from containers import IMAGE_TEST_TIMEOUT_S, BuiltImage, Container, image_config
from prometheus_client.parser import text_string_to_metric_families

from labelserve.bundle import Bundle
from tests.http_testing import slow_post

pytestmark = [pytest.mark.image, pytest.mark.timeout(IMAGE_TEST_TIMEOUT_S)]

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("labelserve", "labelserve_tools", "service", "training", "export")
TOLERANCE = 1e-5
MAX_ADDED_MB = 275  # what the cpu target may add to its base image (253 MB measured with gRPC: grpcio is 19 MB)
Reference = Callable[[bytes], dict[str, float]]
Images = list[tuple[str, bytes]]
_log = logging.getLogger(__name__)


def _compose_hardening() -> list[str]:
    """The labelserve service's run options in docker-compose.yml (read-only root, /tmp tmpfs, no capabilities)."""
    return ["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]


@pytest.fixture(scope="module")
def models(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model's repository as a deployer would provide it: readable by the image's user (pytest's own
    folders are private to root, which UID 10001 cannot read: the service then stops, naming /models)."""
    root = tmp_path_factory.mktemp("models-volume") / "models"
    shutil.copytree(model_repository, root)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


@pytest.fixture(scope="module")
def container(cpu_image: BuiltImage, models: Path) -> Iterator[Container]:
    running = Container.start(cpu_image.tag, [*_compose_hardening(), "--volume", f"{models}:/models:ro",
                                              "--env", "LABELSERVE_REPOSITORY_POLL_S=0"])
    yield running
    running.remove()


def test_the_image_is_what_the_dockerfile_says_and_small(cpu_image: BuiltImage) -> None:
    config = image_config(cpu_image.tag)
    assert config["User"] == "10001:10001"
    assert config["Cmd"] == ["python", "-m", "service"]
    assert config["StopSignal"] == "SIGTERM" and "/models" in config["Volumes"] and "8000/tcp" in config["ExposedPorts"]
    assert "LABELSERVE_MODEL_REPOSITORY=/models" in config["Env"]
    assert "/healthz" in " ".join(config["Healthcheck"]["Test"])
    added_mb = (config["Size"] - image_config(cpu_image.base)["Size"]) / 1e6
    _log.info("the cpu image adds %.0f MB to its base", added_mb)
    assert added_mb < MAX_ADDED_MB, f"the cpu image adds {added_mb:.0f} MB to its base (budget {MAX_ADDED_MB} MB)"


def _checkout_files() -> set[str]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", *PACKAGES], cwd=ROOT,
                            capture_output=True, text=True, check=True, timeout=60).stdout.split()
    return {path for path in listed if "__pycache__" not in path and (ROOT / path).is_file()}


_LIST_INSTALLED = """
import importlib, json, pathlib
files = []
for name in {packages!r}:
    root = pathlib.Path(importlib.import_module(name).__file__).parent
    files += [str(p.relative_to(root.parent)) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
print(json.dumps(sorted(files)))
"""


def test_the_image_holds_every_file_of_this_checkouts_packages_and_no_torch(container: Container) -> None:
    """Non-Python files (static pages, templates) included: setuptools drops them unless package-data names them."""
    listed = container.exec("python", "-c", _LIST_INSTALLED.format(packages=PACKAGES))
    assert listed.returncode == 0, listed.stderr
    installed = set(json.loads(listed.stdout))
    assert installed == _checkout_files(), {"missing": sorted(_checkout_files() - installed),
                                            "extra": sorted(installed - _checkout_files())}
    no_torch = container.exec("python", "-c",
                              "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)")
    assert no_torch.returncode == 0, "torch is installed in the cpu image"


def test_the_service_runs_as_the_unprivileged_user(container: Container) -> None:
    identity = container.exec("id", "-u")
    assert identity.stdout.strip() == "10001", identity
    assert container.exec("touch", "/models/x").returncode != 0  # models are mounted read-only
    assert container.exec("touch", "/usr/x").returncode != 0  # the root filesystem is read-only


def _probabilities(result: dict) -> dict[str, float]:
    return {label["name"]: label["probability"] for label in result["labels"]}


def test_predict_answers_as_in_process_onnxruntime(container: Container, val_jpegs: Images, photo_jpegs: Images,
                                                   reference: Reference) -> None:
    images = val_jpegs[:4] + photo_jpegs
    files = [("files", (name, data, "image/jpeg")) for name, data in images]
    response = httpx.post(f"{container.url}/predict", files=files, timeout=60)
    assert response.status_code == 200, response.text
    for result, (_, data) in zip(response.json()["results"], images, strict=True):
        expected, got = reference(data), _probabilities(result)
        assert got.keys() == expected.keys()
        worst = max(abs(got[name] - expected[name]) for name in expected)
        assert worst <= TOLERANCE, f"{result['filename']}: max |container - onnxruntime| = {worst:.2e}"


def test_tritonclient_binary_infer(container: Container, val_jpegs: Images, tiny_bundle: Bundle,
                                   reference: Reference) -> None:
    client = triton.InferenceServerClient(container.url.removeprefix("http://"), network_timeout=60)
    assert client.is_server_ready() and client.is_model_ready("tiny")
    images = val_jpegs[:3]
    tensor = triton.InferInput("image_bytes", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array([data for _, data in images], dtype=np.object_), binary_data=True)
    result = client.infer("tiny", [tensor], outputs=[triton.InferRequestedOutput("probabilities", binary_data=True)])
    probabilities = result.as_numpy("probabilities")
    expected = np.array([[reference(data)[label] for label in tiny_bundle.manifest.labels] for _, data in images])
    np.testing.assert_allclose(probabilities, expected, atol=TOLERANCE)


def test_metrics_scrape_and_the_healthcheck_passes_inside(container: Container) -> None:
    families = {family.name for family in text_string_to_metric_families(httpx.get(f"{container.url}/metrics").text)}
    assert {"labelserve_requests", "labelserve_batch_size", "labelserve_queue_wait_seconds"} <= families
    health = container.healthcheck()
    assert health.returncode == 0 and "unhealthy" not in health.stdout, health.stdout + health.stderr


def _in_flight(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "labelserve_requests_in_flight" and sample.labels.get("method") == "POST")


def test_stop_drains_accepted_requests_and_exits_zero(cpu_image: BuiltImage, models: Path, val_jpegs: Images,
                                                      reference: Reference) -> None:
    images = val_jpegs[:4]
    draining = Container.start(cpu_image.tag, [*_compose_hardening(), "--volume", f"{models}:/models:ro"])
    try:
        with ThreadPoolExecutor(max_workers=len(images)) as pool:
            futures = [pool.submit(slow_post, draining.url, image, 2.0) for image in images]
            deadline = time.monotonic() + 30
            while _in_flight(draining.url) < len(images):
                assert time.monotonic() < deadline, "the requests did not reach the server"
                time.sleep(0.05)
            exit_code = draining.stop()  # SIGTERM (the image's STOPSIGNAL) while all four are still uploading
            responses = [future.result() for future in futures]
        logs = draining.logs()
    finally:
        draining.remove()
    assert exit_code == 0, logs
    assert "Application shutdown complete" in logs, logs
    for response, (_, data) in zip(responses, images, strict=True):
        assert response.status_code == 200, response.text
        got, expected = _probabilities(response.json()["results"][0]), reference(data)
        assert max(abs(got[name] - expected[name]) for name in expected) <= TOLERANCE


def test_the_page_and_its_files_come_from_the_image(container: Container) -> None:
    """The page at / is package data (service/static/): served from what the image installed."""
    page = httpx.get(f"{container.url}/", timeout=30)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"], page.text[:500]
    for name in ("app.js", "style.css"):
        asset = httpx.get(f"{container.url}/ui/{name}", timeout=30)
        assert asset.status_code == 200 and asset.content == (ROOT / "service" / "static" / name).read_bytes(), name

"""The Dockerfile's gpu target, built from this checkout and run on a machine without a GPU.

It is large (about 6.6 GB; ten minutes cold on two cores), so it runs only when asked:
`LABELSERVE_TEST_GPU_IMAGE=1` (what `make test-gpu-image` sets). TensorRT's libraries come from NVIDIA's index only,
which this project's machines cannot reach, so the image is built with `GPU_WITHOUT=tensorrt-cu13`. Checked: the
image holds one CUDA major (torch, onnxruntime-gpu and cuda-bindings on CUDA 13, every CUDA library the CUDA
provider links found through the image's LD_LIBRARY_PATH, only the driver's libcuda left to the host); it starts
and serves on the CPU, answering as in-process onnxruntime does, after onnxruntime reports why its TensorRT and
CUDA providers cannot load.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from containers import Container, build_image, remove_image, require_container_tools, unique_name
from standin import ensure_standin_python_image

pytestmark = [pytest.mark.image, pytest.mark.timeout(3000),  # the cold build alone takes about 10 minutes
              pytest.mark.skipif(os.environ.get("LABELSERVE_TEST_GPU_IMAGE") != "1",
                                 reason="builds a 6.6 GB image (10 min cold): LABELSERVE_TEST_GPU_IMAGE=1, or "
                                        "make test-gpu-image")]

ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-5
SITE = "/opt/venv/lib/python3.11/site-packages"
Reference = Callable[[bytes], dict[str, float]]
Images = list[tuple[str, bytes]]


@pytest.fixture(scope="module")
def gpu_container(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    require_container_tools()
    base, _ = ensure_standin_python_image()
    tmp = tmp_path_factory.mktemp("gpu-image")
    tag = f"localhost/{unique_name('labelserve-test')}:gpu"
    build_image(ROOT, "gpu", tag, {"PYTHON_IMAGE": base, "NVIDIA_PIP_INDEX": "", "GPU_WITHOUT": "tensorrt-cu13"},
                tmp / "build.log", timeout_s=2400)
    models = tmp / "models"
    shutil.copytree(model_repository, models)
    for path in [models, *models.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    try:
        running = Container.start(tag, ["--volume", f"{models}:/models:ro"], ready_timeout_s=300)
        yield running
        running.remove()
    finally:
        remove_image(tag)


def _python(container: Container, code: str) -> str:
    result = container.exec("python", "-c", code)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_one_cuda_major_inside(gpu_container: Container) -> None:
    versions = json.loads(_python(gpu_container, (
        "import json, onnxruntime, torch, cuda.bindings; "
        "print(json.dumps({'torch_cuda': torch.version.cuda, 'bindings': cuda.bindings.__version__, "
        "'providers': onnxruntime.get_available_providers()}))")))
    assert versions["torch_cuda"].startswith("13.") and versions["bindings"].startswith("13.")
    assert versions["providers"][:2] == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    listed = json.loads(_python(gpu_container, "import json, importlib.metadata as m; "
                                               "print(json.dumps([d.metadata['Name'] for d in m.distributions()]))"))
    assert not [name for name in listed if name.lower().endswith(("-cu12", "-cu11"))], listed
    assert "onnxruntime" not in [name.lower() for name in listed]  # the CPU build would overwrite onnxruntime-gpu


def test_the_cuda_provider_finds_every_library_but_the_driver(gpu_container: Container) -> None:
    linked = gpu_container.exec("ldd", f"{SITE}/onnxruntime/capi/libonnxruntime_providers_cuda.so")
    missing = sorted({line.split()[0] for line in linked.stdout.splitlines() if "not found" in line})
    assert missing == ["libcuda.so.1"], linked.stdout  # libcuda comes from the host's driver at run time


def test_it_serves_on_the_cpu_and_says_why(gpu_container: Container, val_jpegs: Images,
                                           reference: Reference) -> None:
    (model,) = httpx.get(f"{gpu_container.url}/models", timeout=30).json()["models"]
    assert model["engine"] == "onnxruntime/CPUExecutionProvider"
    logs = gpu_container.logs()
    assert "libnvinfer.so.10" in logs and "libcuda.so.1" in logs, logs[-3000:]  # why TensorRT and CUDA did not load
    name, data = val_jpegs[0]
    response = httpx.post(f"{gpu_container.url}/predict", files=[("files", (name, data, "image/jpeg"))], timeout=60)
    assert response.status_code == 200, response.text
    got = {label["name"]: label["probability"] for label in response.json()["results"][0]["labels"]}
    expected = reference(data)
    assert max(abs(got[label] - expected[label]) for label in expected) <= TOLERANCE

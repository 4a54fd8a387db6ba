"""The gpu image's requirements resolve to one CUDA major (13), proven with pip's own resolver for the image's
platform: `pip install --dry-run --report` with `--platform` (manylinux x86_64, glibc up to 2.36 as in Debian
bookworm), `--python-version 3.11` and `--only-binary=:all:`, against PyPI alone (`--isolated`: none of this machine's
local indexes or constraints). The list is the one the Dockerfile's gpu stage installs (docker/requirements.py over
pyproject.toml's extras, without the CPU onnxruntime, plus docker/gpu-requirements.txt).

pip does not widen `--platform manylinux_2_28_x86_64` to the older manylinux tags that wheel accepts at install time,
so every glibc level is listed: with one tag only, wheels such as nvidia-nccl-cu13 2.30.7 (manylinux_2_18) look
missing from PyPI although they are there.

Two packages are prepared locally, and only these:
- tensorrt-cu13 (the TensorRT meta package) is an sdist on PyPI; pip refuses sdists when resolving for another
  platform, so it is built into a wheel here from PyPI's own sdist (pure Python, nothing changed).
- tensorrt-cu13-libs (TensorRT's libraries) is served by NVIDIA's index (pypi.nvidia.com) only: PyPI's sdist of it
  stops metadata generation to say so, and that index is out of reach here. It is the one package treated as present:
  a stand-in wheel with its name and version and the dependency NVIDIA declares for it, `cuda-toolkit[cudart]`
  `>=13,<14` for CUDA 13 (NVIDIA/TensorRT `python/packaging/libs_wheel/setup.py`, `get_requirements`, as of v10.14;
  10.15 and later generate that file from a template the repository does not publish). It exists only for this
  check; the image build asks NVIDIA's index for the real wheel.

A resolver only sees declared dependencies, not which shared libraries a wheel loads, so the last test reads the ELF
`NEEDED` entries of onnxruntime-gpu's CUDA and TensorRT providers and of TensorRT's Python bindings (all three real
wheels from PyPI): TensorRT 11 resolves just as well, yet onnxruntime-gpu 1.31.1 links libnvinfer.so.10.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
GPU_REQUIREMENTS = ROOT / "docker" / "gpu-requirements.txt"
CUDA_MAJOR = 13
GLIBC_MINOR = 36  # Debian bookworm, the python:3.11-slim base
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(GLIBC_MINOR, 4, -1)] + [
    "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
NVIDIA_ONLY = {"tensorrt-cu13-libs": [f"cuda-toolkit[cudart]<{CUDA_MAJOR + 1},>={CUDA_MAJOR}"]}
NOT_CUDA = {"nvidia-ml-py"}  # NVML's Python bindings: talk to the driver, link no CUDA library


def _requirements_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docker_requirements", ROOT / "docker" / "requirements.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _gpu_image_requirements() -> list[str]:
    """What the Dockerfile's gpu stage installs, with its default build arguments (TensorRT included)."""
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    gpu_stage = dockerfile[dockerfile.index(" AS gpu"):]
    command = 'python requirements.py serve export train gpu --without "onnxruntime,$GPU_WITHOUT" --add ' \
              "gpu-requirements.txt"
    assert command in gpu_stage, "the gpu stage no longer installs what this test resolves"
    return _requirements_module().requirements(ROOT / "pyproject.toml", ["serve", "export", "train", "gpu"],
                                               {"onnxruntime"}, [GPU_REQUIREMENTS])


def _pin(name: str) -> str:
    for line in GPU_REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement and canonicalize_name(Requirement(requirement).name) == name:
            (spec,) = Requirement(requirement).specifier
            return spec.version
    raise AssertionError(f"{name} is not pinned in {GPU_REQUIREMENTS}")


def _stand_in_wheel(folder: Path, name: str, version: str, requires: list[str]) -> Path:
    """A wheel that carries only metadata: `name` `version` requiring `requires` (see the module docstring)."""
    dist = f"{name.replace('-', '_')}-{version}"
    files = {
        f"{dist}.dist-info/METADATA": "Metadata-Version: 2.1\n"
                                      f"Name: {name}\nVersion: {version}\n"
                                      + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: labelserve-tests\nRoot-Is-Purelib: false\n"
                                   "Tag: py3-none-manylinux_2_28_x86_64\n",
    }

    def digest(text: str) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()

    record = "".join(f"{path},sha256={digest(text)},{len(text.encode())}\n" for path, text in files.items())
    path = folder / f"{dist}-py3-none-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name_in_zip, text in {**files, f"{dist}.dist-info/RECORD": record + f"{dist}.dist-info/RECORD,,\n"}.items():
            wheel.writestr(name_in_zip, text)
    return path


def _pip(*args: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=timeout_s, check=False)


@pytest.fixture(scope="module")
def resolution(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Name -> metadata of every distribution pip would install into the gpu image."""
    tmp = tmp_path_factory.mktemp("gpu-resolve")
    links = tmp / "links"
    links.mkdir()
    trt_version = _pin("tensorrt-cu13")
    built = _pip("wheel", "--no-deps", "--wheel-dir", str(links), f"tensorrt-cu13=={trt_version}")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    for name, requires in NVIDIA_ONLY.items():
        _stand_in_wheel(links, name, trt_version, requires)
    requirements = tmp / "requirements.txt"
    requirements.write_text("\n".join(_gpu_image_requirements()) + "\n", encoding="utf-8")
    report = tmp / "report.json"
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    result = _pip("install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report), *platforms,
                  "--python-version", "3.11", "--implementation", "cp", "--only-binary=:all:",
                  "--find-links", str(links), "--requirement", str(requirements))
    assert result.returncode == 0, f"the gpu image's requirements do not resolve:\n{result.stderr[-5000:]}"
    installs = json.loads(report.read_text(encoding="utf-8"))["install"]
    return {canonicalize_name(item["metadata"]["name"]): item["metadata"] for item in installs}


def _major(version: str) -> int:
    return Version(version).major


def test_the_set_resolves_with_every_engine_in_it(resolution: dict[str, dict[str, Any]]) -> None:
    versions = {name: meta["version"] for name, meta in resolution.items()}
    assert versions["torch"] == _pin("torch") and versions["onnxruntime-gpu"] == _pin("onnxruntime-gpu")
    assert versions["tensorrt-cu13"] == versions["tensorrt-cu13-bindings"] == versions["tensorrt-cu13-libs"]
    assert _major(versions["cuda-bindings"]) == _major(versions["cuda-toolkit"]) == CUDA_MAJOR
    assert "onnxruntime" not in versions, "the CPU onnxruntime would overwrite onnxruntime-gpu's files"
    for required in ("torchvision", "timm", "onnx", "fastapi", "uvicorn", "torchcodec", "nvidia-cudnn-cu13"):
        assert required in versions, required


def test_every_cuda_package_is_of_one_major(resolution: dict[str, dict[str, Any]]) -> None:
    """-cuNN packages name their CUDA major; NVIDIA's unsuffixed library wheels (cuBLAS 13.x, cuFFT 12.x, ...) are
    the exact versions that cuda-toolkit 13's metadata pins for its components."""
    toolkit = resolution["cuda-toolkit"]
    pinned: dict[str, Requirement] = {}
    for line in toolkit.get("requires_dist", []):
        requirement = Requirement(line)
        pinned.setdefault(canonicalize_name(requirement.name), requirement)
    wrong = []
    for name, meta in resolution.items():
        suffix = re.search(r"-cu(\d+)(-|$)", name)
        if suffix and int(suffix.group(1)) != CUDA_MAJOR:
            wrong.append(f"{name} {meta['version']}")
        elif not suffix and name.startswith("nvidia-") and name not in NOT_CUDA and (
                name not in pinned or not pinned[name].specifier.contains(meta["version"], prereleases=True)):
            wrong.append(f"{name} {meta['version']} (cuda-toolkit {toolkit['version']} pins "
                         f"{pinned[name].specifier if name in pinned else 'nothing'})")
    assert not wrong, f"not CUDA {CUDA_MAJOR}: {wrong}"
    for name in ("torch", "onnxruntime-gpu"):  # what the engines ask for, in every extra, names no other major
        cuda = [r for r in resolution[name].get("requires_dist", []) if "cuda" in r or "nvidia" in r]
        other = [r for r in cuda if any(int(m) != CUDA_MAJOR for m in re.findall(r"-cu(\d+)\b", r))]
        assert cuda and not other, f"{name} asks for {other}"


_SYSTEM = re.compile(r"^(libc|libm|libdl|librt|libpthread|libgcc_s|libstdc\+\+|ld-linux-x86-64)\.so")


def _needed(wheel: Path, member_suffix: str, tmp: Path) -> set[str]:
    """The shared libraries (ELF NEEDED) of the wheel's member ending in `member_suffix`."""
    with zipfile.ZipFile(wheel) as archive:
        (member,) = [name for name in archive.namelist() if name.endswith(member_suffix)]
        path = Path(archive.extract(member, tmp))
    dynamic = subprocess.run(["readelf", "--dynamic", str(path)], capture_output=True, text=True, check=True,
                             timeout=60).stdout
    return {lib for lib in re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic)
            if not _SYSTEM.match(lib)}


def _majors(libraries: set[str], stem: str) -> set[int]:
    return {int(lib.rsplit(".so.", 1)[1]) for lib in libraries if lib.startswith(f"{stem}.so.")}


def test_the_libraries_onnxruntime_and_tensorrt_load_are_of_the_resolved_majors(
        resolution: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    if shutil.which("readelf") is None:
        pytest.fail("readelf is missing: `make test` installs it (Debian package `binutils`)")
    wheels = tmp_path / "wheels"
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    trt_version = _pin("tensorrt-cu13")
    fetched = _pip("download", "--no-deps", "--only-binary=:all:", *platforms, "--python-version", "3.11",
                   "--dest", str(wheels), f"onnxruntime-gpu=={_pin('onnxruntime-gpu')}",
                   f"tensorrt-cu13-bindings=={trt_version}")
    assert fetched.returncode == 0, fetched.stderr[-3000:]
    (ort_wheel,) = wheels.glob("onnxruntime_gpu-*.whl")
    (bindings_wheel,) = wheels.glob("tensorrt_cu13_bindings-*.whl")
    try:
        cuda_provider = _needed(ort_wheel, "libonnxruntime_providers_cuda.so", tmp_path)
        trt_provider = _needed(ort_wheel, "libonnxruntime_providers_tensorrt.so", tmp_path)
        bindings = _needed(bindings_wheel, ".so", tmp_path)
    finally:
        ort_wheel.unlink()  # 250 MB
    for libraries in (cuda_provider, trt_provider):
        assert _majors(libraries, "libcudart") == {CUDA_MAJOR}, libraries
    trt_major = Version(trt_version).major
    assert _majors(trt_provider, "libnvinfer") == {trt_major}, f"onnxruntime-gpu's TensorRT provider: {trt_provider}"
    assert _majors(bindings, "libnvinfer") == {trt_major}, f"tensorrt {trt_version}: {bindings}"
    assert _majors(trt_provider, "libcudnn") == {_major(resolution["nvidia-cudnn-cu13"]["version"])}
    assert _major(resolution["tensorrt-cu13-libs"]["version"]) == trt_major

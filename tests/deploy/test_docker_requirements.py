"""docker/requirements.py, which gives the Dockerfile its dependency lists: what it prints is what pyproject.toml
declares for the extras asked for, minus what is left out, plus the lines of an added file, each once. Run as the
Dockerfile runs it (a script in a bare Python, standard library only)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docker" / "requirements.py"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-I", str(SCRIPT), "--pyproject", str(ROOT / "pyproject.toml"), *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_serve_is_the_core_dependencies_and_the_serve_extra() -> None:
    result = _run("serve")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == PROJECT["dependencies"] + PROJECT["optional-dependencies"]["serve"]


def test_without_drops_distributions_by_normalised_name_and_add_appends_a_file_once(tmp_path: Path) -> None:
    added = tmp_path / "extra.txt"
    added.write_text("# a comment\n\ntorch==2.14.1  # pinned\nOnnxRuntime_GPU==1.31.1\ntorch==2.14.1\n",
                     encoding="utf-8")
    result = _run("serve", "train", "--without", "ONNXRUNTIME,,prometheus_client", "--add", str(added))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert not [line for line in lines if line.startswith(("onnxruntime>", "prometheus-client"))], lines
    assert lines.count("torch==2.14.1") == 1 and lines[-1] == "OnnxRuntime_GPU==1.31.1"
    assert "fastapi>=0.115" in lines and "timm>=1.0.9" in lines


def test_an_unknown_extra_stops_with_the_extras_there_are() -> None:
    result = _run("serve", "gpus")
    assert result.returncode != 0 and not result.stdout
    assert "no extra(s) gpus" in result.stderr and "serve" in result.stderr

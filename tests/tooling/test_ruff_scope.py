"""Ruff lints every package folder and skips only the model repository at the top (`./models`, from `make serve`).

An unanchored `models` pattern once also excluded `training/models/`, so eleven files went unlinted.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _ruff() -> str:
    found = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(found).is_file():
        pytest.fail("ruff is not installed: it comes with the dev extra")
    return found


def test_only_the_top_level_models_folder_is_excluded(tmp_path: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for relative in ("models/demo/1/generated.py", "training/models/head.py", "tests/models/test_x.py"):
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('"""x"""\n', encoding="utf-8")
    listed = subprocess.run([_ruff(), "check", "--show-files", "."], cwd=tmp_path, capture_output=True, text=True,
                            check=True).stdout
    files = {Path(line.strip()).relative_to(tmp_path).as_posix() for line in listed.splitlines() if line.strip()}
    assert "training/models/head.py" in files
    assert "tests/models/test_x.py" in files
    assert "models/demo/1/generated.py" not in files


def test_every_training_model_file_is_linted() -> None:
    listed = subprocess.run([_ruff(), "check", "--show-files", "training"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout
    linted = {Path(line.strip()).name for line in listed.splitlines() if "/training/models/" in line}
    assert linted == {path.name for path in (ROOT / "training" / "models").glob("*.py")}

"""The house plan (docs/architecture.md) holds: import-linter's contracts in pyproject.toml are all kept.

`lint-imports` reads every import of the six root packages, those inside functions too. The second test proves the
check bites: in a copy of the checkout, one module that breaks each contract makes `lint-imports` fail and name it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("labelserve", "labelserve_tools", "service", "training", "export", "bench")


def _lint_imports() -> str:
    found = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(found).is_file():
        pytest.fail("lint-imports is not installed: import-linter comes with the dev extra")
    return found


def _run(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_lint_imports(), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300,
                          check=False)


def test_every_import_contract_is_kept() -> None:
    result = _run(ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def _copy_of_checkout(target: Path) -> None:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "pyproject.toml",
                             *PACKAGES], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60).stdout
    for relative in listed.split():
        if relative.endswith((".py", ".toml")) and (ROOT / relative).is_file():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / relative, target / relative)


# module written into the copy -> its source -> the contract it breaks (as lint-imports names it)
VIOLATIONS = {
    "export/_probe.py": ("import service.app\n", "Floors"),
    "labelserve/_probe.py": ("def later() -> None:\n    import labelserve_tools.cli\n", "Floors"),
    "service/_probe.py": ("def later() -> None:\n    import training.models\n", "The service imports no training"),
    "service/routes/_probe.py": ("def later() -> None:\n    import torch\n", "The service imports no training"),
    "labelserve/_probe_web.py": ("import fastapi\n", "The shared core needs no web server"),
    "service/_probe_client.py": ("from labelserve.client import Client\n", "The HTTP client"),
}


@pytest.mark.parametrize("relative", sorted(VIOLATIONS))
def test_a_broken_contract_fails_the_check(tmp_path: Path, relative: str) -> None:
    _copy_of_checkout(tmp_path)
    source, contract = VIOLATIONS[relative]
    (tmp_path / relative).write_text(f'"""Breaks a contract on purpose."""\n\n{source}', encoding="utf-8")
    result = _run(tmp_path)
    assert result.returncode != 0, result.stdout[-3000:]
    broken = [line for line in result.stdout.splitlines() if "BROKEN" in line]
    assert broken, result.stdout[-3000:]
    assert contract in " ".join(result.stdout.split()), result.stdout[-3000:]
    assert relative.removesuffix(".py").replace("/", ".") in result.stdout

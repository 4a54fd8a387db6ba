"""The wheel the images install carries every file of the packages, not only their Python modules.

setuptools puts a package's other files (static pages, templates, JSON) into the wheel only when package-data names
them; pyproject.toml does, for every package and any depth. The wheel is built from a copy of this checkout with a
few such files added in sub-folders of each package, so the check bites before any package has data files of its
own; __pycache__ stays out.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("labelserve", "labelserve_tools", "service", "training", "export")
PROBES = ("static/index.html", "static/css/site.css", "templates/page.j2", "data.json")


def test_the_wheel_carries_every_file_of_the_packages(tmp_path: Path) -> None:
    source = tmp_path / "source"
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True, timeout=60).stdout.split()
    for path in listed:
        if (ROOT / path).is_file():
            (source / path).parent.mkdir(parents=True, exist_ok=True)
            (source / path).write_bytes((ROOT / path).read_bytes())
    for package in PACKAGES:
        for probe in PROBES:
            (source / package / probe).parent.mkdir(parents=True, exist_ok=True)
            (source / package / probe).write_text(f"{package}/{probe}\n", encoding="utf-8")
        (source / package / "__pycache__").mkdir(exist_ok=True)
        (source / package / "__pycache__" / "stale.cpython-311.pyc").write_bytes(b"\0")

    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                            "--wheel-dir", str(tmp_path / "dist"), str(source)],
                           capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("labelserve-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = {name for name in archive.namelist() if ".dist-info/" not in name}

    expected = {str(path.relative_to(source)) for package in PACKAGES for path in (source / package).rglob("*")
                if path.is_file() and "__pycache__" not in path.parts}
    assert not expected - in_wheel, f"left out of the wheel: {sorted(expected - in_wheel)}"
    assert not {name for name in in_wheel if "__pycache__" in name}

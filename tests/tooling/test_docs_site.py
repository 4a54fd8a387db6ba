"""The documentation site builds with MkDocs and the Material theme under --strict (mkdocs.yml): a page left out of
nav, a link to a missing page or an unknown anchor, or a broken theme setting fails `make test`, and so CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_docs_site_builds_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner about MkDocs 2.0, printed on every build
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for page in ("index.html", "api/index.html", "operations/index.html", "deploy/index.html",
                 "benchmarks/index.html", "results/index.html", "architecture/index.html", "own-images/index.html"):
        assert (site / page).is_file(), page
    assert "Hostile clients" in (site / "benchmarks" / "index.html").read_text(encoding="utf-8")

"""Model repositories assembled from an existing bundle, for benchmarks and tests: more versions, a config.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from labelserve.bundle import MANIFEST_FILENAME

__all__ = ["copy_version", "write_model_config"]


def copy_version(source: Path, root: Path, version: int, name: str = "tiny") -> Path:
    """`source` (a bundle folder) copied to `root/<name>/<version>`, its manifest saying that version."""
    target = root / name / str(version)
    shutil.copytree(source, target)
    manifest = json.loads((target / MANIFEST_FILENAME).read_text(encoding="utf-8"))
    (target / MANIFEST_FILENAME).write_text(json.dumps({**manifest, "version": version}), encoding="utf-8")
    return target


def write_model_config(root: Path, config: dict, name: str = "tiny") -> None:
    """`root/<name>/config.json`."""
    (root / name / "config.json").write_text(json.dumps(config), encoding="utf-8")

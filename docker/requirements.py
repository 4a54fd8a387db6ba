"""Print the pip requirements of some of this project's extras, as pyproject.toml declares them, one per line.

The Dockerfile installs the dependencies in a layer of their own, from this list, before it copies the source, so a
source edit rebuilds only the small layer that installs the project. The gpu image drops the CPU build of onnxruntime
(onnxruntime-gpu installs the same `onnxruntime` package, and two distributions owning one folder break each other
on install or uninstall) and adds its CUDA stack from a requirements file. Standard library only: it runs in the bare
base image.

    python docker/requirements.py serve
    python docker/requirements.py serve export train gpu --without onnxruntime --add docker/gpu-requirements.txt
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical_name(requirement: str) -> str:
    """The distribution name a requirement line is about, normalised as PEP 503 does."""
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def requirements(pyproject: Path, extras: list[str], without: set[str], added: list[Path]) -> list[str]:
    """The project's own dependencies plus those of `extras`, minus the distributions in `without`, plus the lines of
    the `added` requirements files (comments and blank lines dropped); each line once, in order."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    declared = project.get("optional-dependencies", {})
    if unknown := [extra for extra in extras if extra not in declared]:
        raise SystemExit(f"{pyproject} has no extra(s) {', '.join(unknown)}; it has {', '.join(sorted(declared))}")
    lines = list(project.get("dependencies", []))
    for extra in extras:
        lines += declared[extra]
    for path in added:
        lines += [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    skip = {canonical_name(name) for name in without} | {canonical_name(project["name"])}
    out: list[str] = []
    for line in lines:
        if line and canonical_name(line) not in skip and line not in out:
            out.append(line)
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line: extras to include, `--without NAME[,NAME]`, `--add FILE`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extras", nargs="*", help="extras of pyproject.toml to include")
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    parser.add_argument("--without", action="append", default=[],
                        help="distributions to leave out (comma-separated; may repeat; empty entries are ignored)")
    parser.add_argument("--add", action="append", type=Path, default=[], help="a requirements file to append")
    args = parser.parse_args(argv)
    without = {name.strip() for names in args.without for name in names.split(",") if name.strip()}
    sys.stdout.write("".join(f"{line}\n" for line in requirements(args.pyproject, args.extras, without, args.add)))


if __name__ == "__main__":
    main()

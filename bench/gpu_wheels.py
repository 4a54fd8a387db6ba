"""The wheels a lent GPU machine lacks, for its own Python: resolved here, checked there.

The device can reach no package index, so what the service needs beyond the device image's packages travels as wheels
(`.whl/`, installed there with `pip install --no-index --no-deps --target`). What the image holds is read from the
device tool's docs (KINDS.md, "Python packages already there", plus the versions its "pip list" row gives) into
bench/gpu_device.json, so CI needs no docs:

    python -m bench.gpu_wheels snapshot --docs /work/.library/device/KINDS.md   # after the docs change
    python -m bench.gpu_wheels download --dest .whl                              # what `make gpu-prep` runs
    python -m bench.gpu_wheels check /tmp/site                                   # on the device, after the install
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

__all__ = ["DEVICE_SNAPSHOT", "EXTRAS", "check_site", "download_wheels", "pip_target_flags", "read_device"]

REPO_ROOT = Path(__file__).resolve().parents[1]
DEVICE_SNAPSHOT = Path(__file__).resolve().parent / "gpu_device.json"
EXTRAS = ("serve", "gpu")  # what the session runs: the service, its GPU paths; training and export use the image's
# manylinux tags up to glibc 2.39, as the device tool's README says its pip accepts ("N up to 39")
PLATFORMS = ("manylinux1_x86_64", "manylinux2014_x86_64", *(f"manylinux_2_{n}_x86_64" for n in range(5, 40)))
_TORCH_ROW = re.compile(r"^\|\s*`(\d+\.\d+)`\s*\|\s*`([^`]+)`", re.MULTILINE)  # torchcodec's README table


def _name(raw: str) -> str:
    return str(canonicalize_name(raw))


def parse_device_docs(text: str, kind: str = "nvidia-h200") -> dict[str, Any]:
    """KINDS.md -> {"python": "3.12.3", "packages": {name: version or None}} for one kind of machine."""
    listed = re.search(rf"^{re.escape(kind)}:.*?Packages: (.+?)\.\s*$", text, re.MULTILINE)
    python = re.search(r"python3 is Python (\d+\.\d+\.\d+)", text)
    if not listed or not python:
        raise ValueError(f"no package list or Python version for {kind} in the docs: has KINDS.md changed shape?")
    packages: dict[str, str | None] = {_name(p.strip()): None for p in listed.group(1).split(",")}
    pip_list = re.search(r"filtered by the names it asked for: (.+?) \|", text)
    for name, version in re.findall(r"([A-Za-z0-9_.-]+) (\d[^,\s]*)", pip_list.group(1) if pip_list else ""):
        packages[_name(name)] = version
    read = re.search(r"as last read on a machine running it on (\d{4}-\d{2}-\d{2})", text)
    return {"source": "the device tool's KINDS.md: 'Python packages already there' and its 'pip list' row",
            "kind": kind, "python": python.group(1), "read": read.group(1) if read else None,
            "packages": dict(sorted(packages.items()))}


def read_device(path: Path = DEVICE_SNAPSHOT) -> dict[str, Any]:
    """The committed snapshot of the device image: its Python and its packages (with versions where known)."""
    return json.loads(path.read_text(encoding="utf-8"))


def pip_target_flags(python: str) -> list[str]:
    """pip options that select wheels for the device's CPython (e.g. "3.12.3") on Linux x86_64, from any machine."""
    major_minor = ".".join(python.split(".")[:2])
    return ["--only-binary=:all:", "--implementation", "cp", "--python-version", major_minor,
            *(flag for platform in PLATFORMS for flag in ("--platform", platform))]


def service_requirements(pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    """The project's own dependencies plus the extras the session runs."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    return [*project["dependencies"], *(r for extra in EXTRAS for r in project["optional-dependencies"][extra])]


def _resolve(requirements: list[str], device: dict[str, Any], work: Path) -> list[dict[str, Any]]:
    """pip's resolution for the device's Python, held to the versions the device is known to have."""
    constraints = work / "device-constraints.txt"
    constraints.write_text("".join(f"{n}=={v}\n" for n, v in device["packages"].items() if v), encoding="utf-8")
    report = work / "report.json"
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report",
               str(report), "--target", str(work / "target"), *pip_target_flags(device["python"]),
               "-c", str(constraints), *requirements]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"pip cannot resolve the service's wheels for Python {device['python']}: {tail[0]}")
    return json.loads(report.read_text(encoding="utf-8"))["install"]


def _torch_built_pin(item: dict[str, Any], torch: str | None) -> str | None:
    """A pin for a package built against torch without saying so (torchcodec): its README's table says which of
    its releases runs on the device's torch; None when the resolved one does (or the table says nothing)."""
    if torch is None:
        return None
    rows = dict(_TORCH_ROW.findall(item["metadata"].get("description", "")))
    device_torch = Version(torch)

    def runs(spec: str) -> bool:
        return device_torch in SpecifierSet(spec if spec[0] in "<>=!~" else f"=={spec}.*")

    own = ".".join(item["metadata"]["version"].split(".")[:2])
    if own in rows and runs(rows[own]):
        return None
    fits = sorted((Version(v) for v, spec in rows.items() if runs(spec)), reverse=True)
    if not fits:
        raise RuntimeError(f"no {item['metadata']['name']} release in its README's table runs on torch {torch}")
    return f"{item['metadata']['name']}=={fits[0]}.*"


def lacking(requirements: list[str], device: dict[str, Any], work: Path) -> list[tuple[str, str, str]]:
    """(name, version, wheel file name) of each package the service needs that the device image does not hold."""
    present = device["packages"]
    resolved = _resolve(requirements, device, work)
    pins = [pin for item in resolved if _name(item["metadata"]["name"]) == "torchcodec"
            and (pin := _torch_built_pin(item, present.get("torch")))]
    if pins:
        resolved = _resolve([*requirements, *pins], device, work)
    return sorted((_name(i["metadata"]["name"]), i["metadata"]["version"], i["download_info"]["url"].rsplit("/", 1)[1])
                  for i in resolved if _name(i["metadata"]["name"]) not in present)


def download_wheels(dest: Path, device: dict[str, Any] | None = None) -> list[Path]:
    """Fill `dest` with exactly the wheels the device lacks (one version each; others there are removed)."""
    device = device or read_device()
    with tempfile.TemporaryDirectory(prefix="labelserve-wheels-") as tmp:
        wanted = lacking(service_requirements(), device, Path(tmp))
    dest.mkdir(parents=True, exist_ok=True)
    files = {file for _, _, file in wanted}
    for stale in dest.glob("*.whl"):
        if stale.name not in files:
            stale.unlink()
    missing = [f"{name}=={version}" for name, version, file in wanted if not (dest / file).is_file()]
    if missing:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(dest),
                   *pip_target_flags(device["python"]), *missing]
        subprocess.run(command, check=True)
    names = [parse_wheel_filename(p.name)[0] for p in dest.glob("*.whl")]
    if len(names) != len(set(names)) or set(dest.iterdir()) - {dest / f for f in files}:
        raise RuntimeError(f"{dest} holds other files than the {len(files)} wheels wanted: empty it and run again")
    return sorted(dest / f for f in files)


def check_site(site: Path, device: dict[str, Any] | None = None) -> list[str]:
    """What the wheels installed in `site` need and find neither there nor on this machine (on the device) or, with
    `device` given (a rehearsal elsewhere), in the device's snapshot: one line per unmet requirement."""
    shipped = {_name(d.metadata["Name"]): d.version for d in metadata.distributions(path=[str(site)])}
    if device is None:
        available = {_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    else:
        available = dict(device["packages"])
    python = device["python"] if device else ".".join(map(str, sys.version_info[:3]))
    environment = {"python_version": ".".join(python.split(".")[:2]), "python_full_version": python,
                   "sys_platform": "linux", "platform_machine": "x86_64", "extra": ""}
    problems = []
    for dist in metadata.distributions(path=[str(site)]):
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker and not requirement.marker.evaluate(environment):
                continue
            name = _name(requirement.name)
            version = shipped.get(name, available.get(name, "absent"))
            if version == "absent" or (version and not requirement.specifier.contains(version, prereleases=True)):
                problems.append(f"{dist.metadata['Name']} {dist.version} needs {requirement}, found {version}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    snapshot = commands.add_parser("snapshot", help="read the device docs into bench/gpu_device.json")
    snapshot.add_argument("--docs", type=Path, required=True, help="the device tool's KINDS.md")
    download = commands.add_parser("download", help="the wheels the device lacks, into --dest")
    download.add_argument("--dest", type=Path, default=Path(".whl"))
    check = commands.add_parser("check", help="are the needs of the wheels installed in SITE met")
    check.add_argument("site", type=Path)
    check.add_argument("--as-device", action="store_true", help="judge by the device snapshot, not this machine")
    commands.add_parser("target-flags", help="print pip's options for the device's Python and platform")
    args = parser.parse_args()
    if args.command == "snapshot":
        DEVICE_SNAPSHOT.write_text(json.dumps(parse_device_docs(args.docs.read_text(encoding="utf-8")), indent=1)
                                   + "\n", encoding="utf-8")
        print(f"wrote {DEVICE_SNAPSHOT}")
    elif args.command == "download":
        for path in download_wheels(args.dest):
            print(path)
    elif args.command == "target-flags":
        print(" ".join(pip_target_flags(read_device()["python"])))
    else:
        problems = check_site(args.site, read_device() if args.as_device else None)
        for problem in problems:
            print(problem)
        if problems:
            sys.exit(f"{len(problems)} unmet needs of the shipped wheels (above): add those packages to the "
                     f"wheels (make gpu-prep) or the device snapshot is stale (bench/gpu_device.json)")
        print(f"the wheels in {args.site} have all they need")


if __name__ == "__main__":
    main()

"""A stand-in for `python:3.11-slim-bookworm` made from Debian's own packages, for building the Dockerfile here.

Docker Hub cannot be reached from this project's machines, but Debian's mirror can: `debootstrap` makes a bookworm
`minbase` root filesystem with python3.11 (plus the ca-certificates, netbase and tzdata the official slim image
carries), a venv at /opt/python goes first on PATH (so `python` and `pip` are what the Dockerfile expects), and
`podman import` turns the tree into an image. The image is cached in the containers storage of this machine
(`/var/lib/containers/storage`, as root) under `STANDIN_TAG`, labelled with a hash of the recipe below: later runs
reuse it, and a changed recipe builds it again.

    python tests/deploy/standin.py      # build it now (or reuse it), print its name
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["PROMETHEUS_STANDIN_TAG", "STANDIN_TAG", "ensure_standin_prometheus_image", "ensure_standin_python_image"]

STANDIN_TAG = "localhost/labelserve-standin/python:3.11-slim-bookworm"
PROMETHEUS_STANDIN_TAG = "localhost/labelserve-standin/prometheus:debian"
_LABEL = "labelserve.standin.recipe"
_VENV = "/opt/python"
_RECIPE = {
    "suite": "bookworm",
    "variant": "minbase",
    "packages": ["python3.11", "python3.11-venv", "ca-certificates", "netbase", "tzdata"],
    "venv": _VENV,
    "env": {"PATH": f"{_VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
    "cmd": ["python3"],
}
_MIRROR = os.environ.get("LABELSERVE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
_LOCK = Path(tempfile.gettempdir()) / "labelserve-standin.lock"


def _recipe_hash() -> str:
    return hashlib.sha256(json.dumps(_RECIPE, sort_keys=True).encode()).hexdigest()[:16]


def _run(command: list[str], timeout_s: float) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-3000:]}"
                           f"{result.stderr[-3000:]}")
    return result.stdout


def _cached_recipe() -> str | None:
    result = subprocess.run(["podman", "image", "inspect", STANDIN_TAG], capture_output=True, text=True,
                            timeout=60, check=False)
    if result.returncode != 0:
        return None
    labels = json.loads(result.stdout)[0].get("Labels") or {}
    return labels.get(_LABEL)


def _build(rootfs: Path) -> None:
    _run(["debootstrap", f"--variant={_RECIPE['variant']}", _RECIPE["suite"], str(rootfs), _MIRROR], timeout_s=1800)
    # apt inside the new root resolves the packages' dependencies fully (debootstrap's --include does not: it leaves
    # python3.11-venv unconfigured)
    _run(["chroot", str(rootfs), "apt-get", "install", "--yes", "--no-install-recommends", *_RECIPE["packages"]],
         timeout_s=900)
    _run(["chroot", str(rootfs), "python3.11", "-m", "venv", _VENV], timeout_s=300)
    _run(["chroot", str(rootfs), "apt-get", "clean"], timeout_s=120)
    shutil.rmtree(rootfs / "var" / "lib" / "apt" / "lists", ignore_errors=True)
    (rootfs / "var" / "lib" / "apt" / "lists" / "partial").mkdir(parents=True)
    changes = [f"ENV {key}={value}" for key, value in _RECIPE["env"].items()]
    changes += [f"CMD {json.dumps(_RECIPE['cmd'])}", f"LABEL {_LABEL}={_recipe_hash()}"]
    import_command = ["podman", "import", *(arg for change in changes for arg in ("--change", change)), "-",
                      STANDIN_TAG]
    tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", "-", "."], stdout=subprocess.PIPE)
    try:
        result = subprocess.run(import_command, stdin=tar.stdout, capture_output=True, text=True, timeout=900,
                                check=False)
    finally:
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait()
    if result.returncode != 0 or tar.returncode != 0:
        raise RuntimeError(f"podman import failed ({result.returncode}, tar {tar.returncode}):\n{result.stderr}")


def ensure_standin_python_image() -> tuple[str, float]:
    """The stand-in's image name, built now unless the cache holds this recipe; and the seconds spent building it
    (0.0 when it came from the cache). Needs root, debootstrap and podman."""
    with _LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once build it once
        if _cached_recipe() == _recipe_hash():
            return STANDIN_TAG, 0.0
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="labelserve-standin-") as scratch:
            _build(Path(scratch) / "rootfs")
        return STANDIN_TAG, time.monotonic() - started


# What prom/prometheus does (entrypoint, default flags, user, data folder), around Debian's prometheus binary.
_PROMETHEUS_CONTAINERFILE = f"""FROM {STANDIN_TAG}
COPY prometheus /bin/prometheus
RUN mkdir /prometheus && chown nobody:nogroup /prometheus
USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
"""


def ensure_standin_prometheus_image() -> str:
    """A stand-in for prom/prometheus: this machine's Debian `prometheus` binary (2.42 on bookworm) on the python
    stand-in's Debian root, with the official image's entrypoint, flags, user and data folder. Built with buildah
    (cached layers; a new binary rebuilds it)."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("prometheus is missing: `make test` installs it (Debian package `prometheus`)")
    ensure_standin_python_image()
    with tempfile.TemporaryDirectory(prefix="labelserve-prometheus-") as context:
        shutil.copy2(binary, Path(context) / "prometheus")
        (Path(context) / "Containerfile").write_text(_PROMETHEUS_CONTAINERFILE, encoding="utf-8")
        _run(["buildah", "bud", "--isolation", "chroot", "--format", "docker", "--layers", "--tag",
              PROMETHEUS_STANDIN_TAG, "--file", str(Path(context) / "Containerfile"), context], timeout_s=600)
    return PROMETHEUS_STANDIN_TAG


if __name__ == "__main__":
    name, seconds = ensure_standin_python_image()
    sys.stdout.write(f"{name} ({f'built in {seconds:.0f} s' if seconds else 'cached'})\n")

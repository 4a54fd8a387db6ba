"""Build the Dockerfile's images with Debian's buildah and run them with podman, for real, on a machine without a
Docker engine (imported by name: this folder is on sys.path under pytest).

Building: `buildah bud --isolation chroot --format docker` (docker format keeps HEALTHCHECK) with `--layers`, so the
dependency layers stay cached in this machine's containers storage between runs. pip inside the build gets this
machine's CA bundle through a pip.conf bound over /etc/pip.conf for the build only; the Dockerfile is not changed.

Running: `podman run` works here with two adjustments, both given on the command line:
- the OCI runtime is runc (Debian's `runc`): crun refuses this kernel's hybrid cgroup v1/v2 layout ("cgroups in
  hybrid mode not supported", with or without `--cgroups=disabled`);
- resource limits are given explicitly, within the host's hard limits: podman's defaults (e.g. 1048576 open files)
  lie above them and runc's setrlimit is refused ("operation not permitted").
With those, containers get podman's own bridge network and published ports, named volumes, read-only root
filesystems, dropped capabilities, `podman healthcheck run` and `podman stop` (STOPSIGNAL, then the exit code).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

__all__ = [
    "IMAGE_TEST_TIMEOUT_S", "PODMAN", "BuiltImage", "Container", "NetworkNamespace", "build_ca_volumes",
    "build_image", "image_config", "podman_limits", "remove_image", "require_container_tools", "run_checked",
    "unique_name",
]

PODMAN = ["podman", "--runtime", "runc"]
# pytest-timeout counts a test's fixture setup: on a cold cache the first image test builds the stand-in base (about
# 3.5 min), the cpu image (about 3 min) and, in a run of the image tests alone, the tiny model; on two shared cores
# that passed the suite's 600 s default.
IMAGE_TEST_TIMEOUT_S = 1800
_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
_BUILD_CA = "/etc/ssl/certs/labelserve-build-ca.crt"


def require_container_tools(*extra: str) -> None:
    """Fail with what to do when this is not root or a tool is missing (the image tests need both)."""
    if os.geteuid() != 0:
        pytest.fail("the image tests build and run containers as root with buildah and podman; run them as root, or "
                    "leave them out with -m 'not image'")
    missing = [tool for tool in ("buildah", "podman", "runc", "debootstrap", *extra) if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: `make test` installs them (Debian packages)")


def unique_name(prefix: str) -> str:
    """A container or image name no other test run on this machine uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def run_checked(command: Sequence[str], timeout_s: float = 120, **kwargs: Any) -> str:
    """Run a command; its stdout, or an AssertionError with its output."""
    result = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout_s, check=False, **kwargs)
    assert result.returncode == 0, f"{' '.join(command)} -> {result.returncode}\n{result.stdout[-4000:]}" \
                                   f"{result.stderr[-4000:]}"
    return result.stdout


def podman_limits() -> list[str]:
    """`--ulimit` flags within this machine's hard limits (see the module docstring)."""
    _, open_files = resource.getrlimit(resource.RLIMIT_NOFILE)
    _, processes = resource.getrlimit(resource.RLIMIT_NPROC)
    open_files = 65536 if open_files == resource.RLIM_INFINITY else min(open_files, 65536)
    processes = 16384 if processes == resource.RLIM_INFINITY else min(processes, 16384)
    return ["--ulimit", f"nofile={open_files}:{open_files}", "--ulimit", f"nproc={processes}:{processes}"]


def build_ca_volumes(scratch: Path) -> list[str]:
    """`--volume` flags for a build: this machine's CA bundle (a TLS-intercepting proxy's, where there is one) and a
    pip.conf in `scratch` that points pip at it, bound over /etc/pip.conf for the build's RUN steps only."""
    if not _CA_BUNDLE.exists():
        return []
    pip_conf = scratch / "pip.conf"
    pip_conf.write_text(f"[global]\ncert = {_BUILD_CA}\n", encoding="utf-8")
    return ["--volume", f"{_CA_BUNDLE}:{_BUILD_CA}:ro", "--volume", f"{pip_conf}:/etc/pip.conf:ro"]


def build_image(context: Path, target: str, tag: str, build_args: dict[str, str], log_path: Path,
                timeout_s: float = 1800) -> float:
    """Build `target` of `context`/Dockerfile as `tag`; the seconds it took. The build log goes to `log_path`."""
    command = ["buildah", "bud", "--isolation", "chroot", "--format", "docker", "--layers", "--target", target,
               "--tag", tag]
    for key, value in build_args.items():
        command += ["--build-arg", f"{key}={value}"]
    command += build_ca_volumes(log_path.parent)
    started = time.monotonic()
    with log_path.open("w", encoding="utf-8") as log:
        result = subprocess.run([*command, str(context)], stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s,
                                check=False)
    assert result.returncode == 0, f"buildah bud --target {target} failed:\n{log_path.read_text()[-6000:]}"
    return time.monotonic() - started


@dataclass
class BuiltImage:
    """An image built for the tests."""

    tag: str  # its ID: a concurrent run may move a tag, never an ID
    base: str
    build_s: float
    base_build_s: float  # 0.0 when the base came from the cache


def image_config(tag: str) -> dict[str, Any]:
    """The image's config as podman reports it (Cmd, User, Env, Healthcheck, Volumes, ...) plus its size."""
    (info,) = json.loads(run_checked(["podman", "image", "inspect", tag]))
    return {**info["Config"], "Healthcheck": info.get("Healthcheck") or info["Config"].get("Healthcheck"),
            "Size": info["Size"]}


def remove_image(tag: str) -> None:
    """Untag the image; its layers stay in the build cache. Untagging the 6.6 GB gpu image took over 2 minutes on a
    loaded machine, hence the long timeout."""
    subprocess.run(["podman", "rmi", "--force", tag], capture_output=True, timeout=600, check=False)


@dataclass
class Container:
    """A running container, started with the image's own command, reachable from this host at `url`."""

    name: str
    url: str

    @classmethod
    def start(cls, image: str, options: Sequence[str] = (), port: int = 8000, ready_path: str = "/readyz",
              ready_timeout_s: float = 120.0) -> Container:
        """`podman run -d` the image (its CMD, its USER) with `options`; returns once `ready_path` answers 200."""
        name = unique_name("labelserve-test")
        run_checked([*PODMAN, "run", "--detach", "--name", name, *podman_limits(), "--publish",
                     f"127.0.0.1::{port}", *options, image], timeout_s=120)
        mapped = run_checked(["podman", "port", name, str(port)]).split()[0]  # 127.0.0.1:<host port>
        container = cls(name=name, url=f"http://{mapped}")
        container.wait_until(ready_path, ready_timeout_s)
        return container

    def wait_until(self, path: str, timeout_s: float) -> None:
        """Poll `path` until it answers 200; fail with the container's log if it does not in time."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running():
                raise AssertionError(f"{self.name} exited during startup:\n{self.logs()}")
            try:
                if httpx.get(f"{self.url}{path}", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"{self.name}: {path} was not 200 within {timeout_s} s:\n{self.logs()}")

    def running(self) -> bool:
        """Whether the container is still running."""
        state = subprocess.run(["podman", "inspect", "--format", "{{.State.Running}}", self.name],
                               capture_output=True, text=True, timeout=60, check=False)
        return state.stdout.strip() == "true"

    def logs(self) -> str:
        """Everything the container wrote to stdout and stderr."""
        result = subprocess.run(["podman", "logs", self.name], capture_output=True, text=True, timeout=60,
                                check=False)
        return result.stdout + result.stderr

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        """Run a command inside the running container (as the image's user)."""
        return subprocess.run([*PODMAN, "exec", self.name, *command], capture_output=True, text=True, timeout=120,
                              check=False)

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        """Run the image's HEALTHCHECK command once, inside the container, now."""
        return subprocess.run([*PODMAN, "healthcheck", "run", self.name], capture_output=True, text=True,
                              timeout=120, check=False)

    def stop(self, timeout_s: int = 60) -> int:
        """`podman stop`: the image's STOPSIGNAL, then SIGKILL after `timeout_s`; the container's exit code."""
        run_checked([*PODMAN, "stop", "--time", str(timeout_s), self.name], timeout_s=timeout_s + 60)
        return int(run_checked(["podman", "inspect", "--format", "{{.State.ExitCode}}", self.name]).strip())

    def remove(self) -> None:
        """Remove the container, running or not."""
        subprocess.run([*PODMAN, "rm", "--force", "--time", "0", self.name], capture_output=True, timeout=120,
                       check=False)



@dataclass
class NetworkNamespace:
    """A network namespace of its own, joined to this host by a veth pair: containers started inside it (podman's
    bridge, published ports, DNS) see their own ports 8000 and 9090, and this host reaches them at `address`.
    `nsenter --net` enters it without remounting /sys, which runc needs to find the cgroups (`ip netns exec` would)."""

    name: str
    host_link: str
    address: str

    @classmethod
    def create(cls) -> NetworkNamespace:
        """Make the namespace and the link, on a /30 of 10.231.0.0/16 no interface here uses yet."""
        suffix = uuid.uuid4().hex[:6]
        used = run_checked(["ip", "-4", "-o", "addr"])
        start = uuid.uuid4().int
        subnet = next(f"10.231.{(start + i) % 250}" for i in range(250) if f"10.231.{(start + i) % 250}." not in used)
        namespace = cls(name=f"labelserve-{suffix}", host_link=f"lsh{suffix}", address=f"{subnet}.2")
        run_checked(["ip", "netns", "add", namespace.name])
        try:
            inside = ["ip", "netns", "exec", namespace.name]
            run_checked([*inside, "ip", "link", "set", "lo", "up"])
            run_checked(["ip", "link", "add", namespace.host_link, "type", "veth", "peer", "name", f"lsn{suffix}"])
            run_checked(["ip", "link", "set", f"lsn{suffix}", "netns", namespace.name])
            run_checked(["ip", "addr", "add", f"{subnet}.1/30", "dev", namespace.host_link])
            run_checked(["ip", "link", "set", namespace.host_link, "up"])
            run_checked([*inside, "ip", "addr", "add", f"{subnet}.2/30", "dev", f"lsn{suffix}"])
            run_checked([*inside, "ip", "link", "set", f"lsn{suffix}", "up"])
        except AssertionError:
            namespace.delete()
            raise
        return namespace

    def enter(self) -> list[str]:
        """Command prefix that runs a command inside the namespace."""
        return ["nsenter", f"--net=/var/run/netns/{self.name}"]

    def delete(self) -> None:
        """Remove the link and the namespace."""
        subprocess.run(["ip", "link", "del", self.host_link], capture_output=True, timeout=60, check=False)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=60, check=False)

"""The servers a serving benchmark compares, started as real processes, and the CPU time they spend.

`labelserve` is `python -m service` (labelserve.local_server); `baseline` is bench/baseline_server.py under plain
`uvicorn`, as its user would run it. Both are read back the same way: a URL, a process id, a stop.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from labelserve.bundle import list_versions
from labelserve.loadgen import process_tree_cpu_s
from labelserve.local_server import start_server

__all__ = ["RunningServer", "process_tree_cpu_s", "serve"]

_LISTENING = re.compile(r"running on (http://[0-9.]+:\d+)")
_REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class RunningServer:
    """A server under test: where to reach it, which process to account CPU time to, and its log."""

    url: str
    pid: int
    log_path: Path


def _single_model_repository(repository: Path, model: str, into: Path) -> Path:
    """A repository holding only `model` (a link to it), so a server loads and warms nothing else."""
    (into / model).symlink_to((repository / model).resolve(), target_is_directory=True)
    return into


@contextmanager
def _process(command: list[str], cwd: Path, env: dict[str, str], log_path: Path,
             ready_path: str) -> Iterator[RunningServer]:
    """A server started as `command` (it logs "running on <url>"); SIGTERM and a wait when the block ends."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
            match = _LISTENING.search(log_path.read_text(errors="replace"))
            if match and _answers(match.group(1) + ready_path):
                yield RunningServer(url=match.group(1), pid=process.pid, log_path=log_path)
                return
        raise RuntimeError(f"{' '.join(command)} did not start:\n{log_path.read_text(errors='replace')}")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def _baseline(repository: Path, model: str, log_dir: Path) -> Iterator[RunningServer]:
    bundle = repository / model / str(list_versions(repository / model)[-1])
    env = {**os.environ, "BASELINE_MODEL": str(bundle), "PYTHONPATH": str(_REPO_ROOT)}
    command = [sys.executable, "-m", "uvicorn", "bench.baseline_server:app", "--host", "127.0.0.1", "--port", "0",
               "--no-access-log"]
    with _process(command, _REPO_ROOT, env, log_dir / "baseline.log", "/docs") as server:
        yield server


@contextmanager
def _worktree(commit: str, path: Path) -> Iterator[Path]:
    """A temporary git worktree of `commit` of this repository at `path`."""
    subprocess.run(["git", "-C", str(_REPO_ROOT), "worktree", "add", "--detach", "--quiet", str(path), commit],
                   check=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(_REPO_ROOT), "worktree", "remove", "--force", str(path)], check=True)


@contextmanager
def _labelserve_checkout(checkout: Path, repository: Path, model: str, log_dir: Path,
                         **settings: str) -> Iterator[RunningServer]:
    """`python -m service` from another checkout of the project (an earlier commit), for before/after figures."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELSERVE_")}
    env.update({"PYTHONPATH": str(checkout), "LABELSERVE_PORT": "0", "LABELSERVE_REPOSITORY_POLL_S": "0",
                "LABELSERVE_MODEL_REPOSITORY": str(_single_model_repository(repository, model, log_dir)),
                **{f"LABELSERVE_{k.upper()}": v for k, v in settings.items()}})
    with _process([sys.executable, "-m", "service"], checkout, env, log_dir / "server.log", "/readyz") as server:
        yield server


@contextmanager
def _labelserve(repository: Path, model: str, log_dir: Path, **settings: str) -> Iterator[RunningServer]:
    server = start_server(_single_model_repository(repository, model, log_dir), log_dir, repository_poll_s="0",
                          **settings)
    with server:
        yield RunningServer(url=server.url, pid=server.process.pid, log_path=server.log_path)
        server.stop()


@contextmanager
def serve(kind: str, repository: Path, model: str, **settings: str) -> Iterator[RunningServer]:
    """Start server `kind` on `model` alone: "baseline", "labelserve" (this checkout, with `LABELSERVE_*`
    `settings`), or "labelserve@<commit>" (the service as it was at that commit, same settings, run from a temporary
    git worktree with this environment). It is stopped (SIGTERM, drained) when the block ends."""
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        if kind == "baseline":
            with _baseline(repository, model, Path(tmp)) as server:
                yield server
        elif kind == "labelserve":
            with _labelserve(repository, model, Path(tmp), **settings) as server:
                yield server
        elif kind.startswith("labelserve@"):
            with _worktree(kind.partition("@")[2], Path(tmp) / "checkout") as checkout, \
                    _labelserve_checkout(checkout, repository, model, Path(tmp), **settings) as server:
                yield server
        else:
            raise ValueError(f"unknown server kind {kind!r}; use baseline, labelserve or labelserve@<commit>")

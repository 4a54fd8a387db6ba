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
def _baseline(repository: Path, model: str, log_dir: Path) -> Iterator[RunningServer]:
    bundle = repository / model / str(list_versions(repository / model)[-1])
    log_path = log_dir / "baseline.log"
    env = {**os.environ, "BASELINE_MODEL": str(bundle), "PYTHONPATH": str(_REPO_ROOT)}
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "uvicorn", "bench.baseline_server:app", "--host",
                                    "127.0.0.1", "--port", "0", "--no-access-log"], cwd=_REPO_ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
            if match := _LISTENING.search(log_path.read_text(errors="replace")):
                url = match.group(1)
        if url is None:
            raise RuntimeError(f"the baseline server did not start:\n{log_path.read_text(errors='replace')}")
        httpx.get(f"{url}/docs", timeout=10).raise_for_status()
        yield RunningServer(url=url, pid=process.pid, log_path=log_path)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def _labelserve(repository: Path, model: str, log_dir: Path, **settings: str) -> Iterator[RunningServer]:
    server = start_server(_single_model_repository(repository, model, log_dir), log_dir, repository_poll_s="0",
                          **settings)
    with server:
        yield RunningServer(url=server.url, pid=server.process.pid, log_path=server.log_path)
        server.stop()


@contextmanager
def serve(kind: str, repository: Path, model: str, **settings: str) -> Iterator[RunningServer]:
    """Start server `kind` ("baseline" or "labelserve", the latter with `LABELSERVE_*` `settings`) on `model` alone;
    it is stopped (SIGTERM, drained) when the block ends."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-") as tmp:
        if kind == "baseline":
            with _baseline(repository, model, Path(tmp)) as server:
                yield server
        elif kind == "labelserve":
            with _labelserve(repository, model, Path(tmp), **settings) as server:
                yield server
        else:
            raise ValueError(f"unknown server kind {kind!r}; use baseline or labelserve")

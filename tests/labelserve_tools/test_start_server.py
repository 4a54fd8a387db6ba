"""A server start that is interrupted leaves no server behind (labelserve_tools.local_server.start_server).

The server runs in a session of its own, so a signal to the caller's process group (`timeout` around a benchmark
step, as in bench/gpu_session.sh) does not reach it: the caller must stop it, also mid-start."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from labelserve_tools.local_server import start_server


def _servers_on(repository: Path) -> list[int]:
    """Processes whose environment names `repository` as their model repository."""
    wanted = f"LABELSERVE_MODEL_REPOSITORY={repository}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and wanted in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_a_start_interrupted_by_sigterm_stops_the_server(tmp_path: Path) -> None:
    repository = tmp_path / "repository"  # empty: the server answers /healthz but never /readyz, so the start waits
    repository.mkdir()
    previous = signal.signal(signal.SIGALRM, lambda *_: sys.exit(143))  # what the benchmarks do with a SIGTERM
    signal.setitimer(signal.ITIMER_REAL, 3.0)
    try:
        with pytest.raises(SystemExit):
            start_server(repository, tmp_path)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert _servers_on(repository) == []

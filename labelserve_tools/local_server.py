"""Run the service as a real `python -m service` subprocess: started on a free port, stopped with SIGTERM.

End-to-end tests and the benchmarks use it to measure the service exactly as it is deployed (uvicorn, HTTP, its
own process), started as `python -m service` or as `labelserve serve`, with one or several workers. The port is
chosen by the kernel (`LABELSERVE_PORT=0`) and read back from the startup log line, so parallel runs never race for a
port. The server runs in a process group of its own, so a failed check kills it together with its workers. Logs go
to a file that a failing caller can print. Needs the `serve` and `dev` extras (httpx).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["ServerProcess", "grpc_target_in", "share_priority", "start_server"]

_LISTENING = re.compile(r"running on (http://[0-9.]+:\d+)")
_WORKERS = re.compile(r"running on http://[0-9.]+:\d+ with (\d+) workers")
_WORKER_READY = re.compile(r"worker (\d+) ready \(pid (\d+)\)")
_GRPC = re.compile(r"gRPC \(KServe v2 GRPCInferenceService\) running on ([0-9.]+:\d+)")
_REPO_ROOT = Path(__file__).resolve().parents[1]
Entry = Literal["service", "cli"]
_COMMANDS: dict[Entry, list[str]] = {"service": ["-m", "service"], "cli": ["-m", "labelserve_tools.cli", "serve"]}


@dataclass
class ServerProcess:
    """A running service process and where to reach it."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    workers: int = 1

    def log(self) -> str:
        """Everything the server logged so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_records(self) -> list[dict[str, object]]:
        """The server's JSON log lines, parsed (lines that are not JSON are left out)."""
        records = []
        for line in self.log().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    @property
    def grpc_target(self) -> str:
        """`host:port` of the server's gRPC endpoint (OIP over gRPC), from its startup log."""
        target = grpc_target_in(self.log())
        if target is None:
            raise AssertionError(f"the server logged no gRPC address (LABELSERVE_GRPC=false?):\n{self.log()}")
        return target

    def worker_pids(self) -> dict[int, int]:
        """Worker index -> process id of the worker serving now, from the supervisor's "ready" lines."""
        pids: dict[int, int] = {}
        for record in self.log_records():
            if match := _WORKER_READY.fullmatch(str(record.get("message", ""))):
                pids[int(match.group(1))] = int(match.group(2))
        return pids

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the matching samples of a real Prometheus scrape of `/metrics` (0.0 when none exists yet);
        with several workers, per-worker gauges carry a `pid` label that this adds up."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return sum(float(sample.value) for family in text_string_to_metric_families(text) for sample in family.samples
                   if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()))

    def __enter__(self) -> ServerProcess:
        """Use as a context: whatever happens inside, the process does not outlive the block."""
        return self

    def __exit__(self, *_exc: object) -> None:
        """Kill the server and its workers if the block did not stop them (a failed check must not leak a server)."""
        _kill_group(self.process)

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM to the server process (as an orchestrator sends it), then check the shutdown was graceful: uvicorn
        finished in-flight requests, every worker's lifespan drained its batchers, and the process exited with 0."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            exit_code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(self.process)
            raise AssertionError(f"server did not stop within {timeout_s} s after SIGTERM:\n{self.log()}") from None
        assert exit_code == 0, f"server exited with {exit_code}:\n{self.log()}"
        drained = self.log().count("Application shutdown complete")
        assert drained >= self.workers, f"{drained} of {self.workers} lifespans finished shutting down:\n{self.log()}"


def grpc_target_in(log: str) -> str | None:
    """`host:port` of the gRPC endpoint a server's log announces; None for a server without gRPC."""
    match = _GRPC.search(log)
    return match.group(1) if match else None


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the server's process group (the server and any workers it started), then reap the server.

    Only while the server runs, so the group id is surely still ours; workers whose server has exited notice it and
    exit by themselves.
    """
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _environment(repository: Path, settings: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELSERVE_")}
    env.update({"LABELSERVE_MODEL_REPOSITORY": str(repository), "LABELSERVE_HOST": "127.0.0.1",
                "LABELSERVE_PORT": "0", "LABELSERVE_GRPC_PORT": "0", "PYTHONUNBUFFERED": "1"})
    env.update({f"LABELSERVE_{k.upper()}": v for k, v in settings.items()})
    return env


def _listening_url(log_path: Path) -> str | None:
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            message = json.loads(line).get("message", "")
        except json.JSONDecodeError:
            message = line
        if match := _LISTENING.search(message):
            return match.group(1)
    return None


def share_priority(pid: int) -> None:
    """Give a server started in a session of its own the caller's scheduling priority. With the kernel's autogroup
    scheduling a session's CPU share is set per session, so a measurement run at a raised priority (`echo -10 >
    /proc/self/autogroup` in its shell, as `labelserve tune` or a benchmark on a shared machine may be) must pass it
    on, or its server would compete with the rest of the machine at the default while its load client does not."""
    try:
        nice = Path("/proc/self/autogroup").read_text().split()[-1]
        Path(f"/proc/{pid}/autogroup").write_text(nice)
    except (OSError, IndexError):
        pass  # no autogroup scheduling here, or no permission: the server keeps the default


def start_server(repository: Path, log_dir: Path, startup_timeout_s: float = 120.0, ready_path: str = "/readyz",
                 entry: Entry = "service", arguments: Sequence[str] = (), python_command: Sequence[str] = (),
                 **settings: str) -> ServerProcess:
    """Start the service on `repository` and return once `ready_path` answers 200 (with `workers`: once every worker
    is ready).

    Args:
        repository: model repository root.
        log_dir: where `server.log` is written.
        startup_timeout_s: how long loading and warm-up may take.
        ready_path: what must answer 200 first: `/readyz` (models loaded), or `/healthz` for a server that is
            expected to answer before any model is (an empty repository).
        entry: `service` starts `python -m service`; `cli` starts `labelserve serve` (as
            `python -m labelserve_tools.cli`).
        arguments: more command-line arguments, e.g. `["--workers", "2"]` for `labelserve serve`.
        python_command: what the interpreter runs instead of `entry`'s module, e.g. a benchmark's wrapper that
            serves with its own trace exporter (`["-m", "bench.request_timeline", "serve"]`).
        **settings: extra settings, e.g. `max_queue_delay_ms="50"` becomes `LABELSERVE_MAX_QUEUE_DELAY_MS=50`.
    """
    log_path = log_dir / "server.log"
    with log_path.open("wb") as log_file:
        command = [*(python_command or _COMMANDS[entry]), *arguments]
        process = subprocess.Popen([sys.executable, *command], cwd=_REPO_ROOT, stdout=log_file,
                                   stderr=subprocess.STDOUT, env=_environment(repository, settings),
                                   start_new_session=True)
    share_priority(process.pid)
    deadline = time.monotonic() + startup_timeout_s
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"server exited with {process.returncode} during startup:\n"
                                     f"{log_path.read_text(errors='replace')}")
            url = _listening_url(log_path)
            if url is not None and _answers(f"{url}{ready_path}") and (workers := _ready_workers(log_path)) is not None:
                return ServerProcess(process=process, url=url, log_path=log_path, workers=workers)
            time.sleep(0.2)
        raise AssertionError(f"server was not ready within {startup_timeout_s} s:\n"
                             f"{log_path.read_text(errors='replace')}")
    except BaseException:  # a failed start, or the caller interrupted (a SIGTERM made SystemExit, Ctrl-C): the server
        _kill_group(process)  # runs in a session of its own, so nothing else would stop it
        raise


def _ready_workers(log_path: Path) -> int | None:
    """How many workers serve once all of them are ready (1 for a single process); None while some still start."""
    log = log_path.read_text(encoding="utf-8", errors="replace")
    if (match := _WORKERS.search(log)) is None:
        return 1
    workers = int(match.group(1))
    return workers if f"all {workers} workers ready" in log else None


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.TransportError:
        return False

"""`LABELSERVE_WORKERS=N`: N server processes on one port, each with its own batchers and engines, supervised.

One Python process parses HTTP, multipart and JSON on one event loop, so on a machine with many cores its front end
caps the service long before the engine does. Here the supervisor (the process that was started) binds the port
once and starts N workers with `multiprocessing`'s spawn (fresh interpreters: nothing of onnxruntime's thread pools
is forked); every worker accepts connections from the shared socket, loads every model and batches its own share of
the traffic.

- Metrics: the workers keep their series in memory-mapped files in a temporary folder made for this server
  (prometheus_client's multiprocess mode, `PROMETHEUS_MULTIPROC_DIR`), and whichever worker answers a scrape reads
  them all (`service.observability.Metrics`), so a scrape through the shared port sees the whole server.
- Threads: unless `LABELSERVE_INTRA_OP_THREADS` is set, each worker's onnxruntime gets cpus // N intra-op threads
  (its default, one per core in every worker, would put N threads on each core); cpus are the cores this process
  may run on, capped by a container's CPU limit (cgroup quota). A model's config.json `intra_op_threads` is per
  process too and wins for that model; the start-up line says what every worker runs, from whichever source.
- Stop: SIGTERM or SIGINT to the supervisor is passed on as SIGTERM to every worker; each stops accepting, answers
  what it accepted and drains its batchers; the exit code is 0 when every worker did so.
- A worker that dies while serving is logged with its exit code, its live gauges are dropped and a replacement is
  started (`labelserve_worker_restarts_total`); one that dies before it was ready stops the server with exit code 1,
  since a replacement would fail the same way. A worker whose supervisor disappears drains and exits.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

import uvicorn
from prometheus_client import multiprocess

from service.app import create_app
from service.engines import EngineLoadError
from service.engines.providers import resolve_providers
from service.model_config import ModelConfigError, load_model_config
from service.observability import configure_logging
from service.settings import Settings
from service.uvicorn_config import return_after_drain, uvicorn_config

__all__ = ["available_cpus", "intra_op_summary", "run_workers", "settings_per_worker"]

logger = logging.getLogger(__name__)

_SPAWN = multiprocessing.get_context("spawn")
_STOP_MARGIN_S = 15.0  # beyond drain_timeout_s: lifespan shutdown, engine close, interpreter exit
_READY = "ready"
_CGROUP = Path("/sys/fs/cgroup")


def available_cpus(cgroup: Path = _CGROUP) -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup CPU quota (a container's CPU limit,
    which neither `os.cpu_count()` nor onnxruntime's default thread count sees)."""
    cpus = len(os.sched_getaffinity(0))
    quota = _cgroup_cpu_quota(cgroup)
    return cpus if quota is None else max(1, min(cpus, math.ceil(quota)))


def _cgroup_cpu_quota(cgroup: Path) -> float | None:
    """CPUs' worth of time per period allowed by cgroup v2 (`cpu.max`) or v1 (`cpu.cfs_quota_us`); None if unlimited."""
    try:
        if (v2 := cgroup / "cpu.max").is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        v1 = cgroup / "cpu"
        if (v1 / "cpu.cfs_quota_us").is_file():
            quota_us = int((v1 / "cpu.cfs_quota_us").read_text())
            return None if quota_us < 0 else quota_us / int((v1 / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError) as exc:
        logger.warning("cannot read the CPU quota under %s (%s); using the CPU affinity alone", cgroup, exc)
    return None


def settings_per_worker(settings: Settings, cpus: int) -> Settings:
    """`settings` with the machine's `cpus` divided between the workers' onnxruntime intra-op thread pools, unless
    `intra_op_threads` was set explicitly (then every worker gets what was asked)."""
    if settings.workers == 1 or "intra_op_threads" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"intra_op_threads": max(1, cpus // settings.workers)})


def _threads(count: int) -> str:
    return f"{count} onnxruntime intra-op thread{'' if count == 1 else 's'}"


def _pinned_threads(repository: Path) -> dict[str, int]:
    """Model name -> the intra-op threads its config.json sets (per process); models without the key are left out
    (an invalid config.json too: the workers refuse it and say why)."""
    pinned = {}
    for model_dir in sorted(repository.iterdir()) if repository.is_dir() else []:
        try:
            threads = load_model_config(model_dir).intra_op_threads if model_dir.is_dir() else None
        except ModelConfigError:
            continue
        if threads is not None:
            pinned[model_dir.name] = threads
    return pinned


def intra_op_summary(settings: Settings, cpus: int) -> tuple[str, list[str]]:
    """What each of `settings.workers` workers runs, as the start-up line says it, from whichever source sets it, and
    a warning per source that puts more threads on the cores than there are (`settings`: as given, before
    `settings_per_worker`)."""
    workers, explicit = settings.workers, "intra_op_threads" in settings.model_fields_set
    threads = settings_per_worker(settings, cpus).intra_op_threads
    if threads == 0:
        parts = [f"onnxruntime's default intra-op threads each, one per core ({cpus}): LABELSERVE_INTRA_OP_THREADS=0"]
    elif explicit:
        parts = [f"{_threads(threads)} each (LABELSERVE_INTRA_OP_THREADS)"]
    else:
        parts = [f"{_threads(threads)} each ({cpus} CPUs / {workers} workers)"]
    per_source = {"LABELSERVE_INTRA_OP_THREADS": threads or cpus} if explicit else {}
    for model, count in _pinned_threads(Path(settings.model_repository)).items():
        parts.append(f"model {model}: {count} each, from its config.json")
        per_source[f"model {model}'s config.json"] = count
    warnings = [f"{source} gives each of {workers} workers {_threads(count)}: {workers * count} on {cpus} CPUs, which "
                f"slows every worker down; set it to {max(1, cpus // workers)} (thread counts are per process), or "
                "remove it to split the cores" for source, count in per_source.items() if workers * count > cpus]
    return "; ".join(parts), warnings


def run_workers(settings: Settings) -> int:
    """Serve with `settings.workers` processes until SIGTERM or SIGINT; returns the exit code."""
    cpus = available_cpus()
    per_worker = settings_per_worker(settings, cpus)
    try:
        listener = _bind(settings.host, settings.port)
    except OSError as exc:
        logger.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc)
        return 1
    if per_worker.grpc and per_worker.grpc_port == 0:  # every worker must bind the same port: choose it here
        per_worker = per_worker.model_copy(update={"grpc_port": _free_port(settings.host)})
    metrics_dir = Path(tempfile.mkdtemp(prefix="labelserve-metrics-"))
    # prometheus_client reads this when a worker imports it; spawned workers inherit the environment
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    threads, warnings = intra_op_summary(settings, cpus)
    logger.info("running on http://%s:%d with %d workers (%d CPUs; %s)", settings.host, listener.getsockname()[1],
                settings.workers, cpus, threads)
    for warning in warnings:
        logger.warning("%s", warning)
    if _on_gpu(settings):
        logger.warning("%d workers on a GPU: each creates its own CUDA context, holds its own copy of every model "
                       "and batches only its share of the requests, so batches get smaller; one worker is usually "
                       "the better shape on one GPU (docs/operations.md, Many cores)", settings.workers)
    try:
        return _Supervisor(per_worker, listener, metrics_dir).run()
    finally:
        listener.close()
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _free_port(host: str) -> int:
    """A port the kernel has free now (for gRPC's port 0 with several workers, which must all bind one port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _on_gpu(settings: Settings) -> bool:
    """Whether the engines would run on a GPU (as far as the settings say without loading a model)."""
    if settings.engine == "tensorrt":
        return True
    if settings.engine == "torch":
        return settings.torch_device.startswith("cuda")
    try:
        return resolve_providers(settings.execution_providers)[0] != "CPUExecutionProvider"
    except EngineLoadError:  # the workers will refuse the providers with the reason; nothing to warn about here
        return False


def _bind(host: str, port: int) -> socket.socket:
    """The shared socket, bound but not listening: each worker listens on it once its models are loaded, so
    connections are refused until one can answer, as with a single process."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError:
        listener.close()
        raise
    return listener


@dataclass
class _Worker:
    index: int
    process: BaseProcess
    link: Connection  # "ready" arrives on it; the worker sees it close when the supervisor is gone
    ready: bool = False
    link_open: bool = True


class _Supervisor:
    """Starts the workers, replaces one that dies, and stops them all on SIGTERM/SIGINT."""

    def __init__(self, settings: Settings, listener: socket.socket, metrics_dir: Path) -> None:
        self._settings = settings
        self._listener = listener
        self._metrics_dir = metrics_dir
        self._workers: list[_Worker] = []
        self._stop_signal: int | None = None
        self._failed = False
        self._all_ready_logged = False

    def run(self) -> int:
        """Supervise until asked to stop or a worker fails to start, then drain every worker."""
        wakeup, wakeup_writer = socket.socketpair()
        wakeup_writer.setblocking(False)
        previous_wakeup_fd = signal.set_wakeup_fd(wakeup_writer.fileno())
        previous_handlers = {sig: signal.signal(sig, self._on_stop_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._workers = [self._start(index) for index in range(self._settings.workers)]
            while self._stop_signal is None and not self._failed:
                self._watch_once(wakeup)
            if self._stop_signal is not None:
                logger.info("%s: stopping %d workers, each answers what it accepted (up to %.1f s)",
                            signal.Signals(self._stop_signal).name, len(self._workers),
                            self._settings.drain_timeout_s)
            return self._stop_all()
        finally:
            signal.set_wakeup_fd(previous_wakeup_fd)
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
            wakeup.close()
            wakeup_writer.close()

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stop_signal = signum  # the wakeup fd ends the wait in `_watch_once`

    def _start(self, index: int, replaces_pid: int | None = None) -> _Worker:
        link, worker_end = _SPAWN.Pipe()
        process = _SPAWN.Process(target=_run_worker, name=f"labelserve-worker-{index}",
                                 args=(index, self._settings, self._listener, worker_end, replaces_pid))
        process.start()
        worker_end.close()  # the worker has its own copy; this one would hide the worker's exit from `link`
        return _Worker(index=index, process=process, link=link)

    def _watch_once(self, wakeup: socket.socket) -> None:
        links = {w.link: w for w in self._workers if w.link_open}
        sentinels = {w.process.sentinel: w for w in self._workers}
        for ready in wait([wakeup, *links, *sentinels]):
            if ready is wakeup:
                wakeup.recv(4096)
            elif ready in links:
                self._read_link(links[ready])  # type: ignore[index]
            elif ready in sentinels:
                self._replace(sentinels[ready])  # type: ignore[index]

    def _read_link(self, worker: _Worker) -> None:
        if not worker.link_open:  # its exit was handled earlier in the same wake-up, which closed the link
            return
        try:
            message = worker.link.recv()
        except EOFError:  # the worker is gone; its sentinel says so too
            worker.link_open = False
            return
        if message == _READY and not worker.ready:
            worker.ready = True
            logger.info("worker %d ready (pid %d)", worker.index, worker.process.pid)
            if not self._all_ready_logged and all(w.ready for w in self._workers):
                self._all_ready_logged = True
                logger.info("all %d workers ready", len(self._workers))

    def _replace(self, worker: _Worker) -> None:
        worker.process.join()
        while worker.link_open and worker.link.poll():  # a "ready" it sent before dying still counts
            self._read_link(worker)
        pid, code = worker.process.pid, worker.process.exitcode
        self._forget(worker)
        if not worker.ready:
            logger.error("worker %d (pid %s) exited with code %s before it was ready; stopping the server, since a "
                         "replacement would fail the same way", worker.index, pid, code)
            self._failed = True
            self._workers.remove(worker)
            return
        logger.error("worker %d (pid %s) exited with code %s while serving; starting a replacement",
                     worker.index, pid, code)
        self._workers[self._workers.index(worker)] = self._start(worker.index, replaces_pid=pid)

    def _forget(self, worker: _Worker) -> None:
        """Drop a finished worker's live gauges (in-flight requests, queue depth) and its link."""
        if worker.process.pid is not None:
            multiprocess.mark_process_dead(worker.process.pid, str(self._metrics_dir))
        worker.link.close()
        worker.link_open = False

    def _stop_all(self) -> int:
        # The workers keep their copies of the socket until they stop accepting; once they all have, new
        # connections are refused instead of waiting in a backlog that no process reads.
        self._listener.close()
        for worker in self._workers:
            if worker.process.exitcode is None:
                worker.process.terminate()  # SIGTERM: uvicorn's graceful shutdown, then the lifespan's drain
        deadline = time.monotonic() + self._settings.drain_timeout_s + _STOP_MARGIN_S
        clean = not self._failed
        for worker in self._workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.exitcode is None:
                logger.error("worker %d (pid %s) did not stop in time; killing it", worker.index, worker.process.pid)
                worker.process.kill()
                worker.process.join()
            if worker.process.exitcode != 0:
                logger.error("worker %d (pid %s) stopped with exit code %s", worker.index, worker.process.pid,
                             worker.process.exitcode)
                clean = False
            self._forget(worker)
        if clean:
            logger.info("all %d workers drained and stopped", len(self._workers))
        return 0 if clean else 1


class _WorkerTag(logging.Filter):
    """Adds `worker` (its index) and `pid` to every log line of a worker, so lines can be told apart."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self._index = index
        self._pid = os.getpid()

    def filter(self, record: logging.LogRecord) -> bool:
        """Tag `record`; never drops it."""
        record.worker = self._index
        record.pid = self._pid
        return True


def _run_worker(index: int, settings: Settings, listener: socket.socket, link: Connection,
                replaces_pid: int | None) -> None:
    """A worker process: the app and uvicorn on the shared socket, until SIGTERM (exit code 0 after draining)."""
    configure_logging(settings.log_level)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_WorkerTag(index))
    return_after_drain()
    app = create_app(settings)
    if replaces_pid is not None:
        app.state.labelserve.metrics.worker_restarts.inc()
        logger.info("worker %d starts in place of pid %d", index, replaces_pid)
    server = uvicorn.Server(uvicorn_config(app, settings))
    threading.Thread(target=_report_to_supervisor, args=(server, link), name="supervisor-link", daemon=True).start()
    server.run(sockets=[listener])


def _report_to_supervisor(server: uvicorn.Server, link: Connection) -> None:
    """Tell the supervisor once the server accepts connections, then drain and exit if the supervisor goes away
    (killed: nobody would stop or replace this worker any more)."""
    while not server.started:  # set by uvicorn once, after the lifespan startup; checked until then
        if server.should_exit:
            return
        time.sleep(0.02)
    link.send(_READY)
    try:
        link.recv()  # the supervisor never writes again: this returns only when its end closes
    except EOFError:
        if not server.should_exit:
            logger.error("the supervisor is gone; draining and exiting")
            os.kill(os.getpid(), signal.SIGTERM)

"""The servers a serving benchmark compares, started as real processes, and the CPU time they spend.

`labelserve` is `python -m service` (labelserve_tools.local_server); `baseline` is bench/baseline_server.py under plain
`uvicorn`, as its user would run it. Both are read back the same way: a URL, a process id, a stop.
"""

from __future__ import annotations

import json
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
from labelserve_tools.loadgen import process_tree_cpu_s
from labelserve_tools.local_server import share_priority, start_server
from service.model_config import MODEL_CONFIG_FILENAME

__all__ = ["RunningServer", "process_tree_cpu_s", "serve", "split_kind", "tuned_config"]

_LISTENING = re.compile(r"running on (http://[0-9.]+:\d+)")
_REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class RunningServer:
    """A server under test: where to reach it, which process to account CPU time to, and its log."""

    url: str
    pid: int
    log_path: Path


def _single_model_repository(repository: Path, model: str, into: Path, with_config: bool = False) -> Path:
    """A repository holding only `model` (links to its versions), so a server loads and warms nothing else; the
    model's config.json (per-model settings, e.g. written by `labelserve tune`) only `with_config`, so that the
    service's defaults are measured as defaults."""
    source = (repository / model).resolve()
    (into / model).mkdir()
    for item in source.iterdir():
        if item.name != MODEL_CONFIG_FILENAME or with_config:
            (into / model / item.name).symlink_to(item)
    return into


def tuned_config(repository: Path, model: str) -> dict[str, object]:
    """The model's config.json, which "labelserve-tuned" serves with; an error saying how to make it if missing."""
    path = repository / model / MODEL_CONFIG_FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run `labelserve tune --repository {repository} --model "
                                f"{model}` first")
    return json.loads(path.read_text(encoding="utf-8"))


@contextmanager
def _process(command: list[str], cwd: Path, env: dict[str, str], log_path: Path,
             ready_path: str) -> Iterator[RunningServer]:
    """A server started as `command` (it logs "running on <url>"); SIGTERM and a wait when the block ends."""
    with log_path.open("wb") as log:
        # a session of its own, as labelserve_tools.local_server starts the service: with the kernel's autogroup
        # scheduling, a server in the load client's session would share the client's CPU share (measured: gRPC at
        # 32 clients 4 % faster that way), so servers started differently would not be compared like with like
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
            match = _LISTENING.search(log_path.read_text(errors="replace"))
            if match and _answers(match.group(1) + ready_path):
                share_priority(process.pid)
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


_PREPROCESS_FIELDS = ("import json, sys; from labelserve.preprocess import PreprocessSpec; "
                      "json.dump(sorted(PreprocessSpec.model_fields), sys.stdout)")


def _repository_for_checkout(checkout: Path, repository: Path, model: str, into: Path) -> Path:
    """A repository holding `model` as a service at `checkout` can load it: manifests whose `input` carries keys
    that the checkout's preprocessing spec does not know (added since, e.g. `jpeg_dct_scaling`) are rewritten
    without them, and the weights are linked. The older service then runs the same network the way it could: a
    decode-side key it lacks is work it did not know how to save, which is what a before/after figure should show."""
    fields = subprocess.run([sys.executable, "-c", _PREPROCESS_FIELDS], cwd=checkout, check=True, text=True,
                            capture_output=True, env={**os.environ, "PYTHONPATH": str(checkout)})
    known = set(json.loads(fields.stdout))
    target = into / "repository" / model
    for bundle in sorted(p for p in (repository / model).resolve().iterdir() if p.is_dir()):
        copy = target / bundle.name
        copy.mkdir(parents=True)
        for item in bundle.iterdir():
            if item.name != "manifest.json":
                (copy / item.name).symlink_to(item.resolve())
        manifest = json.loads((bundle / "manifest.json").read_text())
        manifest["input"] = {k: v for k, v in manifest["input"].items() if k in known}
        (copy / "manifest.json").write_text(json.dumps(manifest))
    return target.parent


@contextmanager
def _labelserve_checkout(checkout: Path, repository: Path, model: str, log_dir: Path,
                         **settings: str) -> Iterator[RunningServer]:
    """`python -m service` from another checkout of the project (an earlier commit), for before/after figures."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELSERVE_")}
    env.update({"PYTHONPATH": str(checkout), "LABELSERVE_PORT": "0", "LABELSERVE_GRPC_PORT": "0",
                "LABELSERVE_REPOSITORY_POLL_S": "0",
                "LABELSERVE_MODEL_REPOSITORY": str(_repository_for_checkout(checkout, repository, model, log_dir)),
                **{f"LABELSERVE_{k.upper()}": v for k, v in settings.items()}})
    with _process([sys.executable, "-m", "service"], checkout, env, log_dir / "server.log", "/readyz") as server:
        yield server


@contextmanager
def _labelserve(repository: Path, model: str, log_dir: Path, with_config: bool = False,
                python_command: tuple[str, ...] = (), **settings: str) -> Iterator[RunningServer]:
    server = start_server(_single_model_repository(repository, model, log_dir, with_config), log_dir,
                          python_command=python_command, repository_poll_s="0", **settings)
    with server:
        yield RunningServer(url=server.url, pid=server.process.pid, log_path=server.log_path)
        server.stop()


def split_kind(kind: str) -> tuple[str, dict[str, str]]:
    """A server kind with `LABELSERVE_*` settings after a colon, `labelserve:grpc=false,port=0`, as (kind, settings)."""
    name, _, options = kind.partition(":")
    return name, dict(option.split("=", 1) for option in options.split(",") if option)


@contextmanager
def serve(kind: str, repository: Path, model: str, **settings: str) -> Iterator[RunningServer]:
    """Start server `kind` on `model` alone: "baseline", "labelserve" (this checkout, with `LABELSERVE_*`
    `settings`), "labelserve-tuned" (the same with the model's config.json, which overrides them),
    "labelserve-traced" (the same, every request traced to a file: bench.request_timeline), or
    "labelserve@<commit>" (the service as it was at that commit, same settings, run from a temporary git worktree
    with this environment). It is stopped (SIGTERM, drained) when the block ends."""
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        if kind == "baseline":
            with _baseline(repository, model, Path(tmp)) as server:
                yield server
        elif kind in ("labelserve", "labelserve-tuned"):
            if kind == "labelserve-tuned":
                tuned_config(repository, model)
            with _labelserve(repository, model, Path(tmp), kind == "labelserve-tuned", **settings) as server:
                yield server
        elif kind == "labelserve-traced":  # spans to the file REQUEST_TIMELINE_SPANS names (bench.request_timeline)
            with _labelserve(repository, model, Path(tmp), python_command=("-m", "bench.request_timeline", "serve"),
                             **settings) as server:
                yield server
        elif kind.startswith("labelserve@"):
            with _worktree(kind.partition("@")[2], Path(tmp) / "checkout") as checkout, \
                    _labelserve_checkout(checkout, repository, model, Path(tmp), **settings) as server:
                yield server
        else:
            raise ValueError(f"unknown server kind {kind!r}; use baseline, labelserve, labelserve-tuned or "
                             "labelserve@<commit>")

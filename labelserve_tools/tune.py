"""`labelserve tune`: find the serving settings of one model on the machine it will serve on, like Triton's Model
Analyzer, and write them into `<repository>/<model>/config.json`.

Each trial starts the real service (`python -m service`, on a repository holding only that model, with the trial's
settings in its config.json), drives closed-loop load at each concurrency asked for, and reads images/s, p50/p99 and
the server's CPU seconds per image. The search is coordinate descent from the current settings: one knob at a time
(max batch size, onnxruntime intra-op threads, decode threads, spinning, queue delay, engine), every value of it
with the others at their best so far, keeping the best; until every knob was tried or the time budget is spent (the
result lists what the budget left unmeasured).
A trial is feasible when its p99 stays within the latency budget at every concurrency; the best is the feasible one
with the most images/s at the highest concurrency, a new setting replacing it only when it is more than 5 % faster
(or as fast and more than 5 % cheaper in CPU per image), since smaller differences are within a machine's noise,
and only when it wins again when both are measured once more (a machine's speed drifts between trials too).
Only the settings that the search changed from where it started are written (`changed_settings`): a default that
nothing beat stays unwritten, so it keeps following the service's own (a thread count, for one, is split between
workers unless a config.json pins it; the counts written are per server process). Settings are read when a version
is loaded: restart the service (or export a new version) for the written config.json to take effect.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from labelserve.bundle import Bundle, list_versions, load_bundle
from labelserve.errors import ConfigError, ServingError
from labelserve_tools.loadgen import run_level
from labelserve_tools.local_server import start_server
from service.model_config import MODEL_CONFIG_FILENAME, load_model_config, update_model_config

__all__ = ["KNOBS", "Trial", "TuneResult", "candidate_values", "changed_settings", "format_trials", "progress_line",
           "read_images", "stand_in_images", "tune", "write_config"]

logger = logging.getLogger(__name__)

# The knobs in the order they are searched: the ones that move throughput most come first.
KNOBS = ("max_batch_size", "intra_op_threads", "decode_threads", "intra_op_spinning", "max_queue_delay_ms", "engine")
MIN_GAIN = 0.05  # a setting must beat the best by this fraction to replace it: smaller differences are noise
SERVICE_DEFAULTS: dict[str, Any] = {"max_batch_size": 16, "intra_op_threads": 0, "decode_threads": 4,
                                    "intra_op_spinning": False, "max_queue_delay_ms": 5.0, "engine": "onnxruntime"}


@dataclass
class Trial:
    """One measured setting: the knob values and the load results per concurrency."""

    settings: dict[str, Any]
    levels: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    # what the trial is: "start" (the settings the search starts from), the knob it changes, or "again" (a
    # re-measurement that confirms or refutes an apparent improvement)
    role: str = ""

    def p99_ms(self) -> float:
        """The worst p99 over the concurrencies (infinite for a failed trial)."""
        return max((level["latency"]["p99_ms"] for level in self.levels), default=math.inf) if self.ok else math.inf

    @property
    def ok(self) -> bool:
        """Whether the server ran and answered at every concurrency."""
        return self.error is None and bool(self.levels) and all(level["ok"] > 0 for level in self.levels)

    def throughput(self) -> float:
        """Images/s at the highest concurrency (0 for a failed trial)."""
        return self.levels[-1]["images_per_s"] if self.ok else 0.0

    def cpu_ms(self) -> float:
        """Server CPU milliseconds per image at the highest concurrency."""
        return self.levels[-1]["server_cpu_s_per_image"] * 1000.0 if self.ok else math.inf


@dataclass
class TuneResult:
    """Every trial in order, the best one, whether it met the latency budget, where the search started, and the
    knob values the time budget left unmeasured (`knob=value`)."""

    trials: list[Trial]
    best: Trial
    feasible: bool
    start: dict[str, Any] = field(default_factory=dict)
    planned: int = 0
    unmeasured: list[str] = field(default_factory=list)


def changed_settings(result: TuneResult, knobs: Sequence[str] = KNOBS) -> dict[str, Any]:
    """The best trial's settings that differ from where the search started: what the measurements say to change.
    A starting value that nothing beat (a service default, or the config.json's own) is left out."""
    return {k: result.best.settings[k] for k in knobs if result.best.settings.get(k) != result.start.get(k)}


def _engines(bundle: Bundle) -> list[str]:
    """The engines this bundle can be served with on this machine."""
    formats = {engine.format for engine in bundle.manifest.engines}
    engines = ["onnxruntime"]
    if "torch" in formats and find_spec("torch") is not None:
        engines.append("torch")
    if "tensorrt" in formats and find_spec("tensorrt") is not None:
        engines.append("tensorrt")
    return engines


def candidate_values(knob: str, bundle: Bundle, cores: int) -> list[Any]:
    """The values tried for one knob on this machine and bundle."""
    if knob == "max_batch_size":
        largest = max(engine.max_batch for engine in bundle.manifest.engines)
        return [size for size in (1, 2, 4, 8, 16, 32) if size <= largest]
    if knob == "intra_op_threads":
        return sorted({1, max(1, cores // 2), cores})
    if knob == "decode_threads":
        return sorted({1, 2, cores, 2 * cores})
    if knob == "intra_op_spinning":
        return [False, True]
    if knob == "max_queue_delay_ms":
        return [0.0, 2.0, 5.0, 10.0]
    if knob == "engine":
        return _engines(bundle)
    raise ValueError(f"unknown knob {knob!r}; knobs: {', '.join(KNOBS)}")


def _better(candidate: Trial, best: Trial | None, budget_ms: float | None) -> bool:
    if best is None:
        return candidate.ok
    if not candidate.ok:
        return False

    def feasible(trial: Trial) -> bool:
        return budget_ms is None or trial.p99_ms() <= budget_ms

    if feasible(candidate) != feasible(best):
        return feasible(candidate)
    if not feasible(candidate):  # neither meets the budget: the faster-answering one is closer
        return candidate.p99_ms() < best.p99_ms()
    if candidate.throughput() > best.throughput() * (1 + MIN_GAIN):
        return True
    # within the noise on throughput: the one that costs clearly less CPU per image
    return (candidate.throughput() >= best.throughput() * (1 - MIN_GAIN)
            and candidate.cpu_ms() < best.cpu_ms() * (1 - MIN_GAIN))


def _run_trial(bundle: Bundle, settings: dict[str, Any], payloads: list[bytes], concurrencies: Sequence[int],
               seconds: float, work: Path) -> Trial:
    """Serve the model alone with `settings` as its config.json and measure it."""
    trial_dir = Path(tempfile.mkdtemp(prefix="trial-", dir=work))
    repository, logs = trial_dir / "repository", trial_dir / "logs"
    model_dir = repository / bundle.manifest.name
    model_dir.mkdir(parents=True)
    logs.mkdir()
    (model_dir / str(bundle.manifest.version)).symlink_to(bundle.path.resolve(), target_is_directory=True)
    (model_dir / MODEL_CONFIG_FILENAME).write_text(json.dumps(settings), encoding="utf-8")
    trial = Trial(settings=dict(settings))
    try:
        with start_server(repository, logs, repository_poll_s="0") as server:
            trial.levels = [run_level(server.url, c, seconds, payloads, bundle.manifest.name,
                                      server_pid=server.process.pid) for c in concurrencies]
            server.stop()
    except (AssertionError, OSError) as exc:  # the service refused these settings or died: record, move on
        trial.error = str(exc).splitlines()[0][:300]
    return trial


def progress_line(done: int, total: int, elapsed_s: float, budget_s: float) -> str:
    """`tune [####......] 3/13 trials, 42 s of the 600 s budget`; once the budget is spent, says that no more trials
    start (the bar counts trials: the budget only stops new ones, a started trial runs to its end)."""
    filled = round(20 * min(1.0, done / max(1, total)))
    line = f"tune [{'#' * filled}{'.' * (20 - filled)}] {done}/{total} trials, {elapsed_s:.0f} s"
    if elapsed_s >= budget_s:
        return f"{line}: the {budget_s:g} s budget is spent, no more trials start"
    return f"{line} of the {budget_s:g} s budget"


def _progress(done: int, total: int, elapsed_s: float, budget_s: float) -> None:
    sys.stderr.write(f"\r{progress_line(done, total, elapsed_s, budget_s)}\x1b[K")
    sys.stderr.flush()


@dataclass
class _Search:
    """The trials so far and the best of them, measuring one setting at a time."""

    bundle: Bundle
    payloads: list[bytes]
    concurrencies: Sequence[int]
    seconds: float
    latency_budget_ms: float | None
    confirm: bool
    work: Path = Path()
    trials: list[Trial] = field(default_factory=list)
    best: Trial | None = None

    @property
    def done(self) -> int:
        """Planned trials measured (re-measurements not counted)."""
        return sum(trial.role != "again" for trial in self.trials)

    def measure(self, settings: dict[str, Any], role: str) -> Trial:
        trial = _run_trial(self.bundle, settings, self.payloads, self.concurrencies, self.seconds, self.work)
        trial.role = role
        self.trials.append(trial)
        return trial

    def consider(self, trial: Trial) -> None:
        """Make `trial` the best if it is better (and, with `confirm`, still better when both are measured again)."""
        if not _better(trial, self.best, self.latency_budget_ms):
            return
        if self.best is None or not self.confirm:
            self.best = trial
            return
        # a win may be a noisy moment: measure both again, the best first; keep it if it holds
        incumbent, challenger = self.measure(self.best.settings, "again"), self.measure(trial.settings, "again")
        if _better(challenger, incumbent, self.latency_budget_ms):
            self.best = challenger


def _validate(budget_s: float, seconds_per_level: float, concurrencies: Sequence[int]) -> None:
    if budget_s <= 0 or seconds_per_level <= 0:
        raise ConfigError(f"--budget-s ({budget_s:g}) and --seconds ({seconds_per_level:g}) must be above 0")
    if not concurrencies or min(concurrencies) < 1:
        raise ConfigError(f"--concurrency needs client counts of at least 1, got {list(concurrencies)}")


def _start_settings(repository: Path, model: str, bundle: Bundle) -> dict[str, Any]:
    """Where the search starts: the model's config.json over the service's defaults."""
    current = load_model_config(repository / model).model_dump(exclude={"version_policy"}, exclude_none=True)
    start = {**SERVICE_DEFAULTS, **current}
    start["max_batch_size"] = min(start["max_batch_size"], max(candidate_values("max_batch_size", bundle, 1)))
    return start


def tune(repository: Path, model: str, payloads: list[bytes], concurrencies: Sequence[int],
         latency_budget_ms: float | None, budget_s: float, seconds_per_level: float = 5.0,
         knobs: Sequence[str] = KNOBS, progress: Callable[[int, int, float, float], None] = _progress,
         confirm: bool = True) -> TuneResult:
    """Search the knobs for `model` (its newest version) under closed-loop load; returns every trial and the best.

    Args:
        repository: the model repository.
        model: model name.
        payloads: the images to send (encoded files, as clients will send them).
        concurrencies: closed-loop client counts measured in every trial, ascending.
        latency_budget_ms: the p99 every concurrency must stay within (None: throughput only).
        budget_s: stop starting new trials once this much time is spent (> 0).
        seconds_per_level: measuring time per concurrency per trial.
        knobs: which knobs to search, in order.
        progress: called after every trial with (planned trials done, planned, elapsed s, budget s).
        confirm: a setting that beats the best is adopted only if it beats it again when both are measured once
            more (the pair is listed as "again"): on a machine whose speed drifts by more than `MIN_GAIN` between
            trials, one lucky trial would otherwise win.

    Raises:
        ConfigError: a budget, a measuring time or the concurrencies are not positive.
        ServingError: the model is not in the repository, or no trial could serve it.
    """
    _validate(budget_s, seconds_per_level, concurrencies)
    versions = list_versions(repository / model)
    if not versions:
        raise ServingError(f"no version of model {model!r} in {repository}: `labelserve export ... --repository "
                           f"{repository} --name {model}` makes one")
    bundle = load_bundle(repository / model / str(versions[-1]))
    start = _start_settings(repository, model, bundle)
    cores = os.cpu_count() or 1
    # searching a knob measures its values other than the starting one (the others keep their best so far)
    plan = [(knob, value) for knob in knobs for value in candidate_values(knob, bundle, cores) if value != start[knob]]
    planned, unmeasured = 1 + len(plan), []
    search = _Search(bundle, payloads, concurrencies, seconds_per_level, latency_budget_ms, confirm)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="labelserve-tune-") as work:
        search.work = Path(work)
        search.consider(search.measure(start, "start"))
        progress(search.done, planned, time.monotonic() - started, budget_s)
        for knob, value in plan:
            if time.monotonic() - started >= budget_s:
                unmeasured.append(f"{knob}={value}")
                continue
            search.consider(search.measure({**(search.best.settings if search.best else start), knob: value}, knob))
            progress(search.done, planned, time.monotonic() - started, budget_s)
    sys.stderr.write("\n")
    if search.best is None:
        raise ServingError(f"no trial served {model}: " + "; ".join(t.error or "no answers" for t in search.trials))
    feasible = latency_budget_ms is None or search.best.p99_ms() <= latency_budget_ms
    return TuneResult(trials=search.trials, best=search.best, feasible=feasible, start=start, planned=planned,
                      unmeasured=unmeasured)


def write_config(model_dir: Path, settings: dict[str, Any]) -> Path:
    """Merge `settings` into the model's config.json (other keys, e.g. the version policy, are kept); validated
    before anything is written, and written atomically."""
    update_model_config(model_dir, settings)
    return model_dir / MODEL_CONFIG_FILENAME


def stand_in_images(bundle: Bundle, count: int = 32, seed: int = 0) -> list[bytes]:
    """JPEGs at twice the model's input size (smooth colour fields with sensor-like noise), for when no real images
    are given; real ones (`read_images`) measure decode costs truly."""
    import io

    import numpy as np
    from PIL import Image

    spec = bundle.manifest.input
    rng = np.random.default_rng(seed)
    height, width = 2 * spec.height, 2 * spec.width
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    payloads = []
    for _ in range(count):
        a, b, c = rng.uniform(0, 255, 3), rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3)
        field = a + b * xs[..., None] * 255 / width + c * ys[..., None] * 255 / height  # [H, W, 3]
        pixels = np.clip(field + rng.normal(0, 6, field.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        payloads.append(buffer.getvalue())
    return payloads


def read_images(paths: Sequence[Path], limit: int = 64) -> list[bytes]:
    """Up to `limit` image files from files and folders (searched for .jpg, .jpeg, .png, .webp)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"}))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path} is not a file or folder")
    if not files:
        raise FileNotFoundError(f"no images in {[str(p) for p in paths]}")
    return [f.read_bytes() for f in files[:limit]]


def format_trials(result: TuneResult, concurrencies: Sequence[int]) -> str:
    """The trials as a plain-text table, the best marked with *; "trial" says what each one measured (the starting
    settings, the knob it changed, or "again")."""
    header = ["", *KNOBS, *(f"c={c} img/s" for c in concurrencies), "p99 ms", "CPU ms/img", "trial"]
    rows = []
    for trial in result.trials:
        row = ["*" if trial is result.best else "", *(str(trial.settings.get(k, "")) for k in KNOBS)]
        if trial.ok:
            row += [f"{level['images_per_s']:.1f}" for level in trial.levels]
            row += [f"{trial.p99_ms():.1f}", f"{trial.cpu_ms():.2f}", trial.role]
        else:
            row += ["-"] * len(concurrencies) + [trial.error or "no answers", "", trial.role]
        rows.append(row)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).rjust(w) for cell, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)

"""`Metrics` in prometheus_client's multiprocess mode, as the workers of `LABELSERVE_WORKERS` run it: two real
processes write into one folder, one of them is marked dead as the supervisor does, and a third reads the scrape.
(prometheus_client picks the mode when it is imported, so each step is its own interpreter.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

_WORKER = """
import os, sys
from service.observability import Metrics
metrics = Metrics()
served = int(sys.argv[1])
metrics.requests.labels("POST", "/predict", "200").inc(served)
metrics.set_model_info("tiny", 1, "onnxruntime", "CPUExecutionProvider")
metrics.observer("tiny", 1).set_queue_depth(served)
if sys.argv[2] == "retire":
    metrics.clear_model_info("tiny", 1)
print(os.getpid())
"""

_SCRAPE = """
import os
from prometheus_client import generate_latest
from service.observability import Metrics
print(os.getpid())
print(generate_latest(Metrics().registry).decode())
"""


def _python(code: str, folder: Path, *args: str) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    result = subprocess.run([sys.executable, "-W", "error", "-c", code, *args], env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr  # -W error: no "removal not implemented" warning either
    return result.stdout.strip()


def _scrape(folder: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The exposition as a worker serves it; the scraping interpreter counts as a live worker while it runs."""
    from prometheus_client.multiprocess import mark_process_dead

    pid, text = _python(_SCRAPE, folder).split("\n", 1)
    mark_process_dead(int(pid), str(folder))
    return {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k not in {"engine", "provider"}))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_counters_add_up_and_live_gauges_follow_the_live_workers(tmp_path: Path) -> None:
    from prometheus_client.multiprocess import mark_process_dead

    first = int(_python(_WORKER, tmp_path, "3", "keep"))
    second = int(_python(_WORKER, tmp_path, "2", "retire"))  # this one has retired the version
    both = _scrape(tmp_path)
    assert both[("labelserve_requests_total", (("method", "POST"), ("route", "/predict"), ("status", "200")))] == 5
    assert both[("labelserve_model_info", (("model", "tiny"), ("version", "1")))] == 1  # the first still serves it
    assert both[("labelserve_queue_depth", (("model", "tiny"), ("pid", str(first)), ("version", "1")))] == 3
    assert both[("labelserve_queue_depth", (("model", "tiny"), ("pid", str(second)), ("version", "1")))] == 2
    assert both[("labelserve_workers", ())] == 3  # the two, and the scraping interpreter

    mark_process_dead(first, str(tmp_path))  # what the supervisor does when a worker exits
    after = _scrape(tmp_path)
    assert after[("labelserve_requests_total", (("method", "POST"), ("route", "/predict"), ("status", "200")))] == 5
    assert after[("labelserve_model_info", (("model", "tiny"), ("version", "1")))] == 0  # retired by the live one
    assert not any(dict(labels).get("pid") == str(first) for _, labels in after)
    assert after[("labelserve_workers", ())] == 2  # the second, and the scraping interpreter

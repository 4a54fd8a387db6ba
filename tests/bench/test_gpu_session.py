"""The GPU session rehearsed on this CPU machine, so that a broken path, a missing wheel or a renamed flag fails CI
rather than the one session that is lent a GPU.

Real: the tree is copied as the device tool copies it (tracked and untracked-not-ignored files), `make gpu-prep` fills
it (wheels from PyPI for the device's CPython, the demo bundle with its torch program), and bench/gpu_session.sh runs
every step in it with GPU_SESSION_DRY_RUN=1. Smaller than on the device, and why:
  - the demo bundle is exported from the tests' tiny checkpoint, not the demo recipe's (minutes of training);
  - only the demo model is measured: the ResNet-18 bench model takes ~30 s to build and about a minute to serve on
    2 cores, through the same steps under another name (bench/gpu_bundles.py builds it on the device);
  - the GPU tests skip, each saying why; the torch engine and torch JPEG decoding run on the CPU;
  - one second per figure, 1 and 2 workers rather than 1/2/4/8;
  - the hard benchmark on its one-minute preset (a tiny backbone, 64 images), two rows of one seed, not --full.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from bench.gpu_prep import CALL
from bench.gpu_summary import SESSION_FILE

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
_DEVICE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")  # what the device tool sends back from $OUT


def _copy_tree(into: Path) -> Path:
    """The working tree as the device receives it: tracked and untracked-not-ignored files."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "-co", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, into / name)
    return into


@pytest.fixture(scope="module")
def prepared(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A copy of the tree that `make gpu-prep` filled, and what it printed."""
    tree = _copy_tree(tmp_path_factory.mktemp("tree"))
    done = subprocess.run(["make", "-s", "-C", str(REPO), "gpu-prep",
                           f"GPU_PREP_ARGS=--root {tree} --demo-checkpoint {tiny_checkpoint}"],
                          capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return tree, done.stdout


def _session(tree: Path, out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "GPU_SESSION_DRY_RUN": "1", "GPU_SESSION_MODELS": "demo",
                   "GPU_SESSION_PYTHON": sys.executable, "OUT": str(out), **env}
    return subprocess.run(["bash", "bench/gpu_session.sh"], cwd=tree, env=environment, capture_output=True,
                          text=True, check=False, timeout=240)


def test_prep_prints_the_call_for_what_it_made(prepared: tuple[Path, str]) -> None:
    tree, printed = prepared
    assert json.loads(printed.strip().splitlines()[-1]) == CALL
    assert 'run(command="bash bench/gpu_session.sh", carry=[".whl", ".cache/gpu-session"], timeout_s=540)' in printed
    wheels = sorted(p.name for p in (tree / ".whl").glob("*.whl"))
    assert any(w.startswith("fastapi-") for w in wheels) and any(w.startswith("torchcodec-") for w in wheels)
    assert not any(w.startswith(("numpy-", "torch-", "onnxruntime-")) for w in wheels)  # the device has those
    assert (tree / ".cache/gpu-session/sources/demo.pt").is_file()
    assert (tree / ".cache/gpu-session/models/demo/1/model.pt2").is_file()
    assert re.search(r"travels: [\d.]+ MiB of the device's 64", printed)


def test_the_rehearsal_runs_every_step_and_says_why_the_gpu_parts_skip(prepared: tuple[Path, str],
                                                                       tmp_path: Path) -> None:
    tree, _ = prepared
    done = _session(tree, tmp_path / "out")
    assert done.returncode == 0, done.stdout[-3000:]
    session = json.loads((tmp_path / "out" / SESSION_FILE).read_text())
    steps = {s["step"]: s for s in session["steps"]}
    assert session["dry_run"]
    assert list(steps) == ["wheels", "environment", "bundles", "serving-demo", "gpu-tests", "nvjpeg-demo", "workers",
                           "label-monitoring", "grpc", "hard"]
    assert [n for n, s in steps.items() if s["status"] != "ran"] == ["grpc"], done.stdout[-3000:]
    assert steps["grpc"]["detail"].startswith("not built yet")
    monitoring = steps["label-monitoring"]["result"]["cost"]
    assert [row["model"] for row in monitoring] == ["demo"] and monitoring[0]["engine"] == "torch"
    tests = steps["gpu-tests"]["result"]
    assert tests["tests"] >= 5 and not tests["failed"] and all(tests["skip_reasons"])
    assert session["environment"]["gpu"].startswith("skipped: ")
    figures = session["figures"]
    assert figures["pillow"]["demo"]["batching_on_over_off"] > 0
    assert figures["nvjpeg"]["demo"]["service_over_pillow"] > 0
    assert [row["workers"] for row in figures["workers"]] == [1, 2]
    hard = _hard_run(tmp_path / "out")
    assert [(r["method"], r["seed"]) for r in hard["rows"]] == [("linear+ASL", 0), ("query2label+ASL", 0)]
    assert {c["name"] for c in hard["claims"]} == {"Query2Label over a linear head, same loss (ASL)",
                                                   "Query2Label's served attention points better than the linear "
                                                   "head's CAM"}
    returned = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert len(returned) <= 8 and all(_DEVICE_NAME.match(p.name) for p in returned)
    assert all(len(p.relative_to(tmp_path / "out").parts) <= 3 for p in returned)
    assert not _left_running_in(tree)


def test_a_spent_budget_cuts_a_step_short_and_skips_the_rest_saying_so(prepared: tuple[Path, str],
                                                                       tmp_path: Path) -> None:
    tree, _ = prepared
    done = _session(tree, tmp_path / "out", GPU_SESSION_BUDGET_S="40")
    assert done.returncode == 0, done.stdout[-3000:]
    steps = json.loads((tmp_path / "out" / SESSION_FILE).read_text())["steps"]
    assert (steps[0]["step"], steps[0]["status"]) == ("wheels", "ran")
    assert {s["status"] for s in steps} <= {"ran", "timed out", "skipped"}, done.stdout[-3000:]
    spent = [s["step"] for s in steps if s["detail"] == "the session's 40s were spent before it"]
    assert spent[-1] == "hard"  # the last step
    assert not _left_running_in(tree)  # a step stopped at its timeout stops the servers it started


def test_only_the_hard_benchmark_continues_the_rows_an_earlier_session_returned(prepared: tuple[Path, str],
                                                                                tmp_path: Path) -> None:
    tree, _ = prepared
    first = _session(tree, tmp_path / "first", GPU_SESSION_ONLY="hard")
    assert first.returncode == 0, first.stdout[-3000:]
    steps = {s["step"]: s for s in json.loads((tmp_path / "first" / SESSION_FILE).read_text())["steps"]}
    assert [n for n, s in steps.items() if s["status"] == "ran"] == ["wheels", "environment", "hard"]
    assert steps["workers"]["detail"] == "not in GPU_SESSION_ONLY (hard)"
    earlier = tree / ".cache/gpu-session/hard"
    with tarfile.open(tmp_path / "first" / "hard-gpu.tar.gz") as returned:
        returned.extractall(earlier, filter="data")
    try:
        second = _session(tree, tmp_path / "second", GPU_SESSION_ONLY="hard")
        assert second.returncode == 0, second.stdout[-3000:]
        again = _hard_run(tmp_path / "second")
    finally:
        shutil.rmtree(earlier)
    assert len(again["rows"]) == 2 and [s["rows"] for s in again["sessions"]] == [2]  # nothing trained twice
    assert len(again["claims"]) == 2


def _hard_run(out: Path) -> dict[str, Any]:
    """The hard benchmark's JSON from the session's tarball, its predictions beside it."""
    with tarfile.open(out / "hard-gpu.tar.gz") as returned:
        names = returned.getnames()
        document = json.loads(returned.extractfile("./hard-gpu.json").read())  # type: ignore[union-attr]
    assert all(f"./{row['predictions']}" in names for row in document["rows"])
    return document


def _left_running_in(tree: Path) -> list[int]:
    """Processes still running with their working directory in `tree` (the servers a benchmark starts)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(os.readlink(proc / "cwd")).is_relative_to(tree.resolve()):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_a_missing_wheel_is_named_before_anything_runs(prepared: tuple[Path, str], tmp_path: Path) -> None:
    tree, _ = prepared
    wheels = [p for p in (tree / ".whl").glob("*.whl") if not p.name.startswith("starlette-")]
    flags = subprocess.run([sys.executable, "-m", "bench.gpu_wheels", "target-flags"], cwd=tree, capture_output=True,
                           text=True, check=True).stdout.split()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target",
                    str(tmp_path / "site"), *flags, *map(str, wheels)], check=True, capture_output=True)
    check = subprocess.run([sys.executable, "-m", "bench.gpu_wheels", "check", str(tmp_path / "site"), "--as-device"],
                           cwd=tree, capture_output=True, text=True, check=False)
    assert check.returncode != 0
    assert re.search(r"fastapi \S+ needs starlette\S*, found absent", check.stdout), check.stdout
    assert "make gpu-prep" in check.stderr.strip().splitlines()[-1]

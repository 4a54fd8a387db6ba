"""How `LABELSERVE_WORKERS` divides the machine's cores between the workers' onnxruntime thread pools, and how many
cores there are inside a container (the workers themselves run for real in tests/e2e/test_workers_e2e.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.settings import Settings
from service.workers import _on_gpu, available_cpus, intra_op_summary, settings_per_worker


@pytest.mark.parametrize(("workers", "cpus", "threads"), [(2, 16, 8), (4, 16, 4), (8, 16, 2), (3, 16, 5), (4, 2, 1)])
def test_the_cores_are_divided_between_the_workers(workers: int, cpus: int, threads: int) -> None:
    assert settings_per_worker(Settings(workers=workers), cpus).intra_op_threads == threads


def test_one_worker_keeps_onnxruntimes_default() -> None:
    assert settings_per_worker(Settings(), cpus=16).intra_op_threads == 0


@pytest.mark.parametrize("threads", [0, 6])
def test_intra_op_threads_set_explicitly_are_kept(threads: int) -> None:
    """0 set explicitly means onnxruntime's own default, asked for on purpose."""
    assert settings_per_worker(Settings(workers=4, intra_op_threads=threads), cpus=16).intra_op_threads == threads


def test_the_environment_counts_as_set_explicitly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABELSERVE_INTRA_OP_THREADS", "3")
    monkeypatch.setenv("LABELSERVE_WORKERS", "4")
    assert settings_per_worker(Settings(), cpus=16).intra_op_threads == 3


def _cgroup_v2(root: Path, cpu_max: str) -> Path:
    (root / "cpu.max").write_text(cpu_max + "\n")
    return root


def _cgroup_v1(root: Path, quota_us: int, period_us: int = 100_000) -> Path:
    (root / "cpu").mkdir()
    (root / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota_us}\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(f"{period_us}\n")
    return root


def test_a_container_cpu_limit_caps_the_cpus(tmp_path: Path) -> None:
    """A 1.5-CPU limit (cgroup v2 `150000 100000`) rounds up to 2, never above the cores the process may run on."""
    affinity = len(os.sched_getaffinity(0))
    assert available_cpus(_cgroup_v2(tmp_path, "150000 100000")) == min(2, affinity)
    assert available_cpus(_cgroup_v2(tmp_path, "50000 100000")) == 1


def test_a_cgroup_v1_quota_counts_too(tmp_path: Path) -> None:
    assert available_cpus(_cgroup_v1(tmp_path, 100_000)) == 1


@pytest.mark.parametrize("unlimited", ["v2", "v1", "none"])
def test_no_quota_leaves_the_affinity(tmp_path: Path, unlimited: str) -> None:
    root = {"v2": lambda: _cgroup_v2(tmp_path, "max 100000"), "v1": lambda: _cgroup_v1(tmp_path, -1),
            "none": lambda: tmp_path}[unlimited]()
    assert available_cpus(root) == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("settings", "on_gpu"), [
    ({"engine": "tensorrt"}, True),
    ({"engine": "torch", "torch_device": "cuda:0"}, True),
    ({"engine": "torch", "torch_device": "cpu"}, False),
    ({"execution_providers": ["cpu"]}, False),
])
def test_workers_on_a_gpu_are_recognised_for_the_warning(settings: dict[str, object], on_gpu: bool) -> None:
    assert _on_gpu(Settings(workers=2, **settings)) is on_gpu


def _repository(root: Path, configs: dict[str, str]) -> Path:
    for model, config in configs.items():
        (root / model).mkdir(parents=True)
        (root / model / "config.json").write_text(config)
    return root


def test_the_start_up_line_says_the_split_and_each_models_own_count(tmp_path: Path) -> None:
    """Issue 19: the line said "1 ... threads each" while a model's config.json ran 10 in every worker."""
    repository = _repository(tmp_path, {"a": '{"intra_op_threads": 4}', "b": '{"intra_op_threads": 0}', "c": "{}",
                                        "d": "not json"})
    line, warnings = intra_op_summary(Settings(workers=2, model_repository=repository), cpus=4)
    assert line == "2 onnxruntime intra-op threads each (4 CPUs / 2 workers); model a: 4 each, from its config.json"
    assert warnings == ["model a's config.json gives each of 2 workers 4 onnxruntime intra-op threads: 8 on 4 CPUs, "
                        "which slows every worker down; set it to 2 (thread counts are per process), or remove it to "
                        "split the cores"]


@pytest.mark.parametrize(("threads", "line", "warned"), [
    (1, "1 onnxruntime intra-op thread each (LABELSERVE_INTRA_OP_THREADS)", False),
    (3, "3 onnxruntime intra-op threads each (LABELSERVE_INTRA_OP_THREADS)", True),
    (0, "onnxruntime's default intra-op threads each, one per core (4): LABELSERVE_INTRA_OP_THREADS=0", True),
])
def test_the_start_up_line_names_the_environment_when_it_sets_the_threads(tmp_path: Path, threads: int, line: str,
                                                                         warned: bool) -> None:
    summary, warnings = intra_op_summary(Settings(workers=2, intra_op_threads=threads, model_repository=tmp_path), 4)
    assert summary == line and bool(warnings) is warned

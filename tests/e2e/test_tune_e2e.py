"""`labelserve tune` on the tiny model with a short budget: real servers, real load; the config.json it writes
loads, and the service then runs the model with exactly those settings."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
from pathlib import Path

import pytest

from labelserve.bundle import Bundle
from labelserve.cli import main
from service.observability import Metrics
from service.repository import ModelRepository
from service.settings import Settings
from service.tune import Trial, _better, candidate_values, write_config

pytestmark = pytest.mark.e2e


def copy_tiny(model_repository: Path, root: Path) -> Path:
    """A repository of its own holding the tiny model, so tune can write its config.json."""
    shutil.copytree(model_repository / "tiny", root / "repository" / "tiny")
    return root / "repository"


def test_tune_writes_a_config_the_service_then_uses(model_repository: Path, tmp_path: Path, photo_dir: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    repository = copy_tiny(model_repository, tmp_path)
    (repository / "tiny" / "config.json").write_text(json.dumps({"version_policy": {"latest": 1}}))
    code = main(["tune", "--repository", str(repository), "--model", "tiny", "--images", str(photo_dir),
                 "--concurrency", "1", "4", "--budget-s", "20", "--seconds", "0.5", "--latency-budget-ms", "60000",
                 "--knobs", "max_batch_size", "decode_threads"])
    assert code == 0
    table = capsys.readouterr().out
    assert "c=4 img/s" in table and table.count("\n") >= 4  # header, rule, baseline and at least one more trial
    assert sum(line.startswith("*") for line in table.splitlines()) == 1
    written = json.loads((repository / "tiny" / "config.json").read_text())
    assert written["version_policy"] == {"latest": 1}  # kept
    assert {"max_batch_size", "decode_threads"} <= set(written)

    async def served() -> tuple[int, int]:
        loaded = ModelRepository(Settings(model_repository=repository), Metrics())
        await loaded.load_all()
        model = loaded.get("tiny")
        try:
            return model.batcher.max_batch_size, model.decode_pool._max_workers
        finally:
            await loaded.stop(5.0)

    assert asyncio.run(served()) == (written["max_batch_size"], written["decode_threads"])


def test_an_impossible_latency_budget_writes_nothing(model_repository: Path, tmp_path: Path, photo_dir: Path) -> None:
    repository = copy_tiny(model_repository, tmp_path)
    code = main(["tune", "--repository", str(repository), "--model", "tiny", "--images", str(photo_dir),
                 "--concurrency", "2", "--budget-s", "1", "--seconds", "0.5", "--latency-budget-ms", "0.001"])
    assert code == 3
    assert not (repository / "tiny" / "config.json").exists()


def _trial(images_per_s: float, p99_ms: float, cpu_ms: float = 5.0) -> Trial:
    level = {"ok": 10, "images_per_s": images_per_s, "latency": {"p99_ms": p99_ms},
             "server_cpu_s_per_image": cpu_ms / 1000}
    return Trial(settings={}, levels=[level])


def test_the_best_meets_the_budget_first_and_noise_does_not_switch_it() -> None:
    best = _trial(100, 50)
    assert not _better(_trial(104, 40), best, 80)  # 4 % faster is noise
    assert _better(_trial(110, 70), best, 80)  # 10 % faster within the budget
    assert not _better(_trial(200, 90), best, 80)  # faster but over the budget
    assert _better(_trial(100, 50, cpu_ms=4.0), best, 80)  # as fast, 20 % less CPU
    assert _better(_trial(50, 70), _trial(200, 90), 80)  # a feasible one beats an infeasible one
    assert not _better(Trial(settings={}, error="refused"), best, 80)
    assert math.isinf(Trial(settings={}, error="refused").p99_ms())


def test_candidates_follow_the_machine_and_the_bundle(tiny_bundle: Bundle) -> None:
    assert candidate_values("max_batch_size", tiny_bundle, 2) == [1, 2, 4, 8]  # the tiny bundle's max batch is 8
    assert candidate_values("intra_op_threads", tiny_bundle, 16) == [1, 8, 16]
    assert candidate_values("engine", tiny_bundle, 2)[0] == "onnxruntime"
    with pytest.raises(ValueError, match="unknown knob"):
        candidate_values("colour", tiny_bundle, 2)


def test_write_config_refuses_invalid_settings_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="decode_threads"):
        write_config(tmp_path, {"decode_threads": 0})
    assert not (tmp_path / "config.json").exists()

"""`labelserve tune` on the tiny model with a short budget: real servers, real load; the config.json it writes
loads, and the service then runs the model with exactly those settings. It writes only what it measured better than
where it started, and says when the budget cut the search short (issue 19)."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
from pathlib import Path

import pytest

from labelserve.bundle import Bundle
from labelserve.errors import ConfigError
from labelserve_tools.cli import main
from labelserve_tools.tune import (
    Trial,
    _better,
    candidate_values,
    changed_settings,
    format_trials,
    progress_line,
    tune,
    write_config,
)
from service.observability import Metrics
from service.repository import ModelRepository
from service.settings import Settings

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
    assert set(written) - {"version_policy"} <= {"max_batch_size", "decode_threads"}  # only what was measured better

    async def served() -> tuple[int, int]:
        loaded = ModelRepository(Settings(model_repository=repository), Metrics())
        await loaded.load_all()
        model = loaded.get("tiny")
        try:
            return model.batcher.max_batch_size, model.decode_pool.max_workers
        finally:
            await loaded.stop(5.0)

    # what was not written follows the service: its max batch (16) capped at the bundle's 8, its 4 decode threads
    assert asyncio.run(served()) == (written.get("max_batch_size", 8),
                                     written.get("decode_threads", Settings().decode_threads))


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


def _scripted_runs(monkeypatch: pytest.MonkeyPatch, throughputs: dict[float, list[float]]) -> list[float]:
    """Replace the measurement (a real server under load, whose noise cannot be ordered) by a script: each trial of
    queue delay d reads the next figure of throughputs[d]. Returns the delays in the order they were measured."""
    order: list[float] = []

    def run(bundle, settings, payloads, concurrencies, seconds, work) -> Trial:
        delay = settings["max_queue_delay_ms"]
        order.append(delay)
        return Trial(settings=dict(settings), levels=[{"ok": 10, "images_per_s": throughputs[delay].pop(0),
                                                       "latency": {"p99_ms": 10.0},
                                                       "server_cpu_s_per_image": 0.005}])

    monkeypatch.setattr("labelserve_tools.tune._run_trial", run)
    return order


def test_a_lucky_trial_is_measured_again_and_refuted(model_repository: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the default (5 ms) measures 100; 2 ms seems 20 % faster once, but measured again beside the default it is not
    order = _scripted_runs(monkeypatch, {5.0: [100, 118], 0.0: [90], 2.0: [120, 110], 10.0: [95]})
    result = tune(model_repository, "tiny", [b""], [4], None, budget_s=60, knobs=["max_queue_delay_ms"],
                  progress=lambda *_: None)
    assert order == [5.0, 0.0, 2.0, 5.0, 2.0, 10.0]
    assert result.best.settings["max_queue_delay_ms"] == 5.0
    knob = "max_queue_delay_ms"
    assert [trial.role for trial in result.trials] == ["start", knob, knob, "again", "again", knob]
    assert changed_settings(result) == {}  # the starting value won: nothing to write
    assert [line.split()[-1] for line in format_trials(result, [4]).splitlines()[2:]] == [
        "start", knob, knob, "again", "again", knob]


def test_a_win_that_holds_is_kept_and_without_confirm_one_trial_decides(model_repository: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _scripted_runs(monkeypatch, {5.0: [100, 101], 0.0: [90], 2.0: [120, 119], 10.0: [95]})
    confirmed = tune(model_repository, "tiny", [b""], [4], None, budget_s=60, knobs=["max_queue_delay_ms"],
                     progress=lambda *_: None)
    assert confirmed.best.settings["max_queue_delay_ms"] == 2.0 and confirmed.best.role == "again"
    order = _scripted_runs(monkeypatch, {5.0: [100], 0.0: [90], 2.0: [120], 10.0: [95]})
    single = tune(model_repository, "tiny", [b""], [4], None, budget_s=60, knobs=["max_queue_delay_ms"],
                  progress=lambda *_: None, confirm=False)
    assert order == [5.0, 0.0, 2.0, 10.0] and single.best.settings["max_queue_delay_ms"] == 2.0


def test_a_default_that_wins_is_not_written_and_a_beaten_one_is(model_repository: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 19: tune wrote `intra_op_threads: 0` (a default nothing beat), which then overrode the per-worker split."""
    repository = copy_tiny(model_repository, tmp_path)
    # the intra_op_threads trials (1 and the cores, neither the starting 0) run at the best queue delay so far
    _scripted_runs(monkeypatch, {5.0: [100] * 6, 0.0: [90], 2.0: [95], 10.0: [95]})
    args = ["tune", "--repository", str(repository), "--model", "tiny", "--concurrency", "4", "--budget-s", "60",
            "--knobs", "max_queue_delay_ms", "intra_op_threads"]
    assert main(args) == 0
    assert not (repository / "tiny" / "config.json").exists()  # neither knob beat its starting value
    _scripted_runs(monkeypatch, {5.0: [100, 100], 0.0: [90], 2.0: [130] * 6, 10.0: [95]})
    assert main(args) == 0
    assert json.loads((repository / "tiny" / "config.json").read_text()) == {"max_queue_delay_ms": 2.0}


def test_a_budget_that_runs_out_says_what_was_not_measured(model_repository: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    repository = copy_tiny(model_repository, tmp_path)
    _scripted_runs(monkeypatch, {5.0: [100]})
    result = tune(repository, "tiny", [b""], [4], None, budget_s=1e-9, knobs=["max_queue_delay_ms"],
                  progress=lambda *_: None)
    assert [t.role for t in result.trials] == ["start"] and result.planned == 4
    assert result.unmeasured == ["max_queue_delay_ms=0.0", "max_queue_delay_ms=2.0", "max_queue_delay_ms=10.0"]
    _scripted_runs(monkeypatch, {5.0: [100]})
    assert main(["tune", "--repository", str(repository), "--model", "tiny", "--concurrency", "4", "--budget-s",
                 "1e-9", "--knobs", "max_queue_delay_ms"]) == 0
    assert "the search was cut short: --budget-s 1e-09 ran out after 1 of 4 planned trials, so " \
           "max_queue_delay_ms=0.0, max_queue_delay_ms=2.0, max_queue_delay_ms=10.0 were not measured" in caplog.text
    assert not (repository / "tiny" / "config.json").exists()


def test_a_budget_of_zero_is_refused_before_any_trial(model_repository: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["tune", "--repository", str(model_repository), "--model", "tiny", "--budget-s", "0"])
    assert refused.value.code == 2 and "--budget-s: must be above 0, got 0" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="must be above 0"):
        tune(model_repository, "tiny", [b""], [4], None, budget_s=0)


def test_the_progress_line_counts_trials_and_says_when_the_budget_is_spent() -> None:
    assert progress_line(3, 13, 42.4, 600) == "tune [#####...............] 3/13 trials, 42 s of the 600 s budget"
    assert progress_line(1, 13, 3.2, 1) == ("tune [##..................] 1/13 trials, 3 s: the 1 s budget is spent, no "
                                            "more trials start")

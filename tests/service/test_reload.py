"""Hot reload: the repository follows the folder (new versions, policies, broken versions) without failing requests."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
from service_testing import copy_model

from service.observability import Metrics
from service.repository import ModelRepository
from service.settings import Settings

Scenario = Callable[[ModelRepository, Metrics, Path], Awaitable[None]]


def _run(root: Path, scenario: Scenario) -> None:
    async def main() -> None:
        metrics = Metrics()
        repository = ModelRepository(Settings(model_repository=root, drain_timeout_s=5.0), metrics)
        await repository.load_all()
        try:
            await scenario(repository, metrics, root)
        finally:
            await repository.stop(5.0)

    asyncio.run(main())


def _served(repository: ModelRepository) -> list[tuple[str, int]]:
    return [(m.name, m.version) for m in repository.models()]


def _loads(metrics: Metrics, version: int, result: str) -> float:
    value = metrics.registry.get_sample_value("labelserve_model_loads_total",
                                              {"model": "tiny", "version": str(version), "result": result})
    return value or 0.0


def _image(served_input_shape: tuple[int, ...]) -> np.ndarray:
    return np.zeros(served_input_shape, dtype=np.float32)


def test_a_new_version_is_swapped_in_and_the_old_one_waits_for_its_requests(model_repository: Path,
                                                                             tmp_path: Path) -> None:
    source = model_repository / "tiny" / "1"
    copy_model(source, tmp_path, "tiny", 1)

    async def scenario(repository: ModelRepository, metrics: Metrics, root: Path) -> None:
        async with repository.lease("tiny") as old:
            copy_model(source, root, "tiny", 2)
            await repository.sync()
            assert _served(repository) == [("tiny", 2)]
            assert repository.get("tiny").version == 2
            # the request that holds v1 still gets its answer after the swap
            outputs = await old.batcher.infer(_image(old.manifest.input.shape))
            assert outputs["logits"].shape == (len(old.manifest.labels),)
        await asyncio.sleep(0.2)  # the retirement task stops v1 once the lease is released
        with pytest.raises(Exception, match="not accepting"):
            await old.batcher.infer(_image(old.manifest.input.shape))
        assert _loads(metrics, 2, "success") == 1
        assert metrics.registry.get_sample_value(
            "labelserve_model_info", {"model": "tiny", "version": "1", "engine": "onnxruntime",
                                      "provider": "CPUExecutionProvider"}) is None

    _run(tmp_path, scenario)


def test_a_broken_version_is_refused_counted_and_retried_only_when_rewritten(model_repository: Path,
                                                                            tmp_path: Path) -> None:
    source = model_repository / "tiny" / "1"
    copy_model(source, tmp_path, "tiny", 1)

    async def scenario(repository: ModelRepository, metrics: Metrics, root: Path) -> None:
        broken = copy_model(source, root, "tiny", 2)
        (broken / "model.onnx").write_bytes(b"truncated")
        await repository.sync()
        await repository.sync()
        assert _served(repository) == [("tiny", 1)]  # the old version keeps serving
        assert _loads(metrics, 2, "failure") == 1  # refused once, not every poll

        (broken.parent / "2").rename(root / "tiny" / ".broken")
        copy_model(source, root, "tiny", 2)  # re-exported: a new manifest
        await repository.sync()
        assert _served(repository) == [("tiny", 2)]

    _run(tmp_path, scenario)


def test_version_policies_from_config_json(model_repository: Path, tmp_path: Path) -> None:
    source = model_repository / "tiny" / "1"
    for version in (1, 2, 3):
        copy_model(source, tmp_path, "tiny", version)
    config = tmp_path / "tiny" / "config.json"

    async def scenario(repository: ModelRepository, metrics: Metrics, root: Path) -> None:
        assert _served(repository) == [("tiny", 3)]
        config.write_text(json.dumps({"version_policy": {"latest": 2}, "max_batch_size": 2}))
        await repository.sync()
        assert _served(repository) == [("tiny", 2), ("tiny", 3)]
        assert repository.get("tiny", 2).batcher.max_batch_size == 2
        config.write_text(json.dumps({"version_policy": {"specific": [1]}}))
        await repository.sync()
        assert _served(repository) == [("tiny", 1)]
        config.write_text("{not json")
        await repository.sync()
        assert _served(repository) == [("tiny", 1)]  # a broken config keeps the model as it is

    _run(tmp_path, scenario)


def test_a_manifest_that_disagrees_with_its_folder_is_refused(model_repository: Path, tmp_path: Path) -> None:
    source = model_repository / "tiny" / "1"
    copy_model(source, tmp_path, "tiny", 1)
    moved = copy_model(source, tmp_path, "tiny", 5)
    moved.rename(tmp_path / "tiny" / "7")  # manifest says 5, folder says 7

    async def scenario(repository: ModelRepository, metrics: Metrics, root: Path) -> None:
        assert _served(repository) == [("tiny", 1)]
        assert _loads(metrics, 7, "failure") == 1

    _run(tmp_path, scenario)


def test_a_removed_model_folder_is_unloaded(model_repository: Path, tmp_path: Path) -> None:
    source = model_repository / "tiny" / "1"
    copy_model(source, tmp_path, "tiny", 1)
    copy_model(source, tmp_path, "other", 1)

    async def scenario(repository: ModelRepository, metrics: Metrics, root: Path) -> None:
        shutil.rmtree(root / "other")
        await repository.sync()
        assert _served(repository) == [("tiny", 1)]

    _run(tmp_path, scenario)


def test_engine_threads_spinning_and_decode_threads_from_config_json(model_repository: Path, tmp_path: Path) -> None:
    copy_model(model_repository / "tiny" / "1", tmp_path, "tiny", 1)
    copy_model(model_repository / "tiny" / "1", tmp_path, "other", 1)
    (tmp_path / "tiny" / "config.json").write_text(json.dumps(
        {"intra_op_threads": 1, "intra_op_spinning": True, "decode_threads": 3}))
    (tmp_path / "other" / "config.json").write_text(json.dumps({"engine": "torch"}))

    async def scenario(repository: ModelRepository, metrics: Metrics, root: Path) -> None:
        tuned = repository.get("tiny")
        options = tuned.engine.session_options  # type: ignore[attr-defined]
        assert options.intra_op_num_threads == 1
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
        assert tuned.decode_pool.max_workers == 3
        other = repository.get("other")
        assert other.engine.info.name == "torch"  # the per-model engine beats the service's onnxruntime
        assert other.decode_pool.max_workers == Settings(model_repository=root).decode_threads

    _run(tmp_path, scenario)


def test_the_service_defaults_apply_without_config_json(model_repository: Path, tmp_path: Path) -> None:
    copy_model(model_repository / "tiny" / "1", tmp_path, "tiny", 1)

    async def scenario(repository: ModelRepository, metrics: Metrics, root: Path) -> None:
        options = repository.get("tiny").engine.session_options  # type: ignore[attr-defined]
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        assert options.intra_op_num_threads == 0
        assert repository.get("tiny").engine.has_lone_session  # type: ignore[attr-defined]

    _run(tmp_path, scenario)


def test_a_models_config_json_can_switch_the_lone_session_off(model_repository: Path, tmp_path: Path) -> None:
    copy_model(model_repository / "tiny" / "1", tmp_path, "tiny", 1)
    (tmp_path / "tiny" / "config.json").write_text(json.dumps({"lone_session": False}))

    async def scenario(repository: ModelRepository, metrics: Metrics, root: Path) -> None:
        assert not repository.get("tiny").engine.has_lone_session  # type: ignore[attr-defined]

    _run(tmp_path, scenario)

"""Model repository: newest loadable version per model, broken models skipped, the rest served."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import pytest
from service_testing import copy_model

from service.errors import ModelNotFoundError, NotReadyError
from service.observability import Metrics
from service.repository import ModelRepository, RepositoryError
from service.settings import Settings


def _load(root: Path) -> list[tuple[str, int, bool]]:
    async def scenario() -> list[tuple[str, int, bool]]:
        repository = ModelRepository(Settings(model_repository=root), Metrics())
        await repository.load_all()
        try:
            served = [(m.name, m.version, m.has_attention) for m in repository.models()]
            assert repository.get().name == served[0][0]  # the default is the first by name
            with pytest.raises(ModelNotFoundError, match="unknown model 'missing'"):
                repository.get("missing")
            return served
        finally:
            await repository.stop(5.0)

    return asyncio.run(scenario())


def test_broken_models_are_skipped_and_the_rest_served(model_repository: Path, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    source = model_repository / "tiny" / "1"
    copy_model(source, tmp_path, "alpha", 1)
    copy_model(source, tmp_path, "beta", 1, drop_attention=True)
    corrupt = copy_model(source, tmp_path, "corrupt", 1)
    (corrupt / "model.onnx").write_bytes(b"not the exported network")
    (tmp_path / "nomanifest" / "1").mkdir(parents=True)
    (tmp_path / "Bad Name" / "1").mkdir(parents=True)
    (tmp_path / "empty").mkdir()

    with caplog.at_level(logging.ERROR, logger="service.repository"):
        served = _load(tmp_path)

    assert served == [("alpha", 1, True), ("beta", 1, False)]
    logged = caplog.text
    assert "sha256" in logged and "corrupt" in logged
    assert "nomanifest" in logged and "Bad Name" in logged and "no integer version" in logged


def test_newest_version_wins_and_a_broken_newest_falls_back(model_repository: Path, tmp_path: Path) -> None:
    source = model_repository / "tiny" / "1"
    copy_model(source, tmp_path, "tiny", 1)
    copy_model(source, tmp_path, "tiny", 2)
    assert _load(tmp_path) == [("tiny", 2, True)]

    broken = copy_model(source, tmp_path, "tiny", 3)
    (broken / "model.onnx").write_bytes(b"\x00" * 10)
    assert _load(tmp_path) == [("tiny", 2, True)]


def test_missing_root_is_a_startup_error_with_a_fix(tmp_path: Path) -> None:
    repository = ModelRepository(Settings(model_repository=tmp_path / "nope"), Metrics())
    with pytest.raises(RepositoryError, match="LABELSERVE_MODEL_REPOSITORY"):
        asyncio.run(repository.load_all())


def test_empty_repository_serves_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        repository = ModelRepository(Settings(model_repository=tmp_path), Metrics())
        await repository.load_all()
        assert repository.models() == []
        with pytest.raises(NotReadyError):
            repository.get()

    asyncio.run(scenario())


def test_shutil_copy_keeps_checksums_valid(model_repository: Path, tmp_path: Path) -> None:
    shutil.copytree(model_repository / "tiny", tmp_path / "tiny")
    assert _load(tmp_path) == [("tiny", 1, True)]

"""Settings: defaults, the LABELSERVE_ environment, fix-it validation, the cached accessor."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings, get_settings


def test_defaults() -> None:
    settings = Settings()
    assert settings.model_repository == Path("models")
    assert (settings.host, settings.port, settings.log_level) == ("127.0.0.1", 8000, "INFO")
    assert (settings.max_batch_size, settings.max_queue_delay_ms, settings.max_queue_size) == (16, 5.0, 256)
    assert settings.max_image_bytes == 20 * 2**20 and settings.max_request_bytes == 64 * 2**20
    assert settings.max_image_pixels == 40_000_000 and settings.max_images_per_request == 32
    assert (settings.decode_threads, settings.intra_op_threads, settings.attention_max_side) == (4, 0, 128)
    assert settings.request_timeout_s == 30 and settings.drain_timeout_s == 30


def test_environment_with_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LABELSERVE_MODEL_REPOSITORY", str(tmp_path))
    monkeypatch.setenv("LABELSERVE_MAX_BATCH_SIZE", "4")
    monkeypatch.setenv("LABELSERVE_LOG_LEVEL", "debug")
    monkeypatch.setenv("MAX_BATCH_SIZE", "99")  # no prefix: ignored
    settings = Settings()
    assert settings.model_repository == tmp_path
    assert settings.max_batch_size == 4
    assert settings.log_level == "DEBUG"


def test_unknown_log_level_says_what_to_use() -> None:
    with pytest.raises(ValidationError, match="LABELSERVE_LOG_LEVEL='loud' is not a log level; use one of"):
        Settings(log_level="loud")


def test_request_limit_below_image_limit_is_refused() -> None:
    with pytest.raises(ValidationError, match="LABELSERVE_MAX_REQUEST_BYTES=10 is smaller than"):
        Settings(max_image_bytes=100, max_request_bytes=10)


@pytest.mark.parametrize("field", ["max_batch_size", "max_queue_size", "decode_threads", "max_images_per_request"])
def test_counts_must_be_positive(field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: 0})


def test_get_settings_is_cached_and_can_be_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    monkeypatch.setenv("LABELSERVE_PORT", "9123")
    try:
        first = get_settings()
        assert first is get_settings()
        assert first.port == 9123
    finally:
        get_settings.cache_clear()

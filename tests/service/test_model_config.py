"""<repository>/<model>/config.json: every key optional, bad values refused with the file named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.model_config import ModelConfig, ModelConfigError, load_model_config, promote_version


def test_absent_file_means_service_defaults(tmp_path: Path) -> None:
    assert load_model_config(tmp_path) == ModelConfig()


def test_every_key_reads_back(tmp_path: Path) -> None:
    keys = {"version_policy": {"latest": 3}, "max_batch_size": 8, "max_queue_delay_ms": 2.5, "max_queue_size": 64,
            "engine": "torch", "intra_op_threads": 2, "intra_op_spinning": True, "lone_session": False,
            "decode_threads": 3, "default_version": 1, "shadow": {"version": 2, "share": 0.5},
            "canary": {"version": 3, "weight": 0.1, "key_header": "X-Tenant"}}
    (tmp_path / "config.json").write_text(json.dumps(keys))
    assert load_model_config(tmp_path).model_dump(exclude={"version_policy"}) == {
        k: v for k, v in keys.items() if k != "version_policy"}


@pytest.mark.parametrize("bad", [{"engine": "tensorflow"}, {"decode_threads": 0}, {"intra_op_threads": -1},
                                 {"intra_op_spinning": "sometimes"}, {"lone_session": "sometimes"},
                                 {"max_batch_size": 0}, {"unknown_key": 1},
                                 {"shadow": {"version": 2, "share": 0}}, {"canary": {"version": 2, "weight": 1.5}},
                                 {"default_version": 2, "shadow": {"version": 2}}])
def test_bad_values_are_refused_naming_the_file(tmp_path: Path, bad: dict) -> None:
    (tmp_path / "config.json").write_text(json.dumps(bad))
    with pytest.raises(ModelConfigError, match=r"config\.json"):
        load_model_config(tmp_path)


def test_zero_intra_op_threads_defers_to_the_service(tmp_path: Path) -> None:
    """0 used to pin onnxruntime's one-thread-per-core default in every worker, overriding the per-worker split."""
    (tmp_path / "config.json").write_text(json.dumps({"intra_op_threads": 0}))
    assert load_model_config(tmp_path).intra_op_threads is None


def test_promote_makes_a_version_the_default_and_drops_its_shadow_entry(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"version_policy": {"latest": 2}, "max_batch_size": 8,
                                                      "default_version": 1, "shadow": {"version": 2}}))
    promoted = promote_version(tmp_path, 2, [1, 2])
    assert (promoted.default_version, promoted.shadow, promoted.max_batch_size) == (2, None, 8)
    assert json.loads((tmp_path / "config.json").read_text())["default_version"] == 2
    with pytest.raises(ModelConfigError, match="no version 7"):
        promote_version(tmp_path, 7, [1, 2])
    with pytest.raises(ModelConfigError, match="not served under"):
        promote_version(tmp_path, 1, [1, 2, 3])  # latest 2 serves 3 and 2

"""Typed config from YAML + overrides, with errors that name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import TrainConfig, load_config


def test_yaml_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  backbone: resnet18\n  head_kwargs: {hidden_dim: 64}\noptim:\n  lr: 0.001\n")
    config = load_config(path, ["optim.lr=3e-4", "data.batch_size=8", "model.head_kwargs={num_heads: 2}",
                                "data.mean=[0.5, 0.5, 0.5]"])
    assert isinstance(config, TrainConfig)
    assert config.model.backbone == "resnet18"
    assert config.optim.lr == pytest.approx(3e-4)
    assert config.data.batch_size == 8
    assert config.model.head_kwargs == {"num_heads": 2}
    assert config.data.mean == (0.5, 0.5, 0.5)
    assert config.data.preprocess_spec().height == config.data.image_size


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", "unknown key"),
        ("data.batch_size=2.5", "integer"),
        ("data.resize=stretch", "not one of"),
        ("amp=maybe", "true/false"),
        ("optim", "key.path=value"),
    ],
)
def test_bad_values_are_named(override: str, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        load_config(None, [override])


def test_the_shipped_configs_parse() -> None:
    for path in sorted(Path(__file__).parents[2].joinpath("configs").glob("*.yaml")):
        load_config(path)

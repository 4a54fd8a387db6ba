"""Typed config from YAML + overrides, with errors that name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from labelserve.errors import ConfigError
from training.config import TrainConfig, config_from_dict, load_config

SHIPPED = Path(__file__).parents[2] / "configs"


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
        ("optim.lrr=1", r"unknown key optim\.lrr; valid keys here: .*\blr\b"),
        ("data.batch_size=2.5", r"data\.batch_size: .*valid integer"),
        ("data.batch_size=true", r"data\.batch_size: .*expected a number, got true/false"),
        ("data.resize=stretch", r"data\.resize: .*'squash' or 'center_crop' \(got 'stretch'\)"),
        ("data.mean=[0.5, 0.5]", r"data\.mean"),
        ("amp=maybe", r"amp: .*valid boolean"),
        ("amp=1", r"amp: .*valid boolean"),
        ("output_dir=3", r"output_dir: .*valid string"),
        ("optim", "key.path=value"),
    ],
)
def test_bad_values_are_named_in_one_line(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(None, [override])
    assert "\n" not in str(caught.value)


def test_yaml_spellings_of_numbers_are_read() -> None:
    """YAML 1.1 reads `3e-4` as a string and `8.0` as a float: both are the numbers they look like."""
    config = load_config(None, ["optim.lr=3e-4", "data.batch_size=8.0", "optim.ema_decay=null"])
    assert (config.optim.lr, config.data.batch_size, config.optim.ema_decay) == (pytest.approx(3e-4), 8, None)


def test_a_checkpoints_config_dict_validates_back(tmp_path: Path) -> None:
    """Checkpoints store `to_dict()`, a plain nested dict as the dataclass version wrote it: it validates back."""
    config = load_config(SHIPPED / "demo.yaml", [f"output_dir={tmp_path}"])
    stored = config.to_dict()
    assert stored["data"]["mean"] == (0.485, 0.456, 0.406) and stored["optim"]["ema_decay"] is None
    assert config_from_dict(stored) == config
    as_config_yaml = {"data": {**stored["data"], "mean": list(stored["data"]["mean"])}, "seed": 0}  # YAML has lists
    assert config_from_dict(as_config_yaml).data.mean == (0.485, 0.456, 0.406)


def test_the_shipped_configs_parse() -> None:
    paths = sorted(SHIPPED.glob("*.yaml"))
    assert paths
    for path in paths:
        load_config(path)

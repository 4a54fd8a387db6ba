"""The synthetic attributes benchmark: deterministic, readable by the real attribute-table reader, correlated as the
design promises, and honest about what a view can show."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labelserve_tools.cli import main as cli_main
from training.data.figures import ATTRIBUTE_GROUPS, ATTRIBUTES, sample_figure
from training.data.synthetic_attributes import generate_attributes_dataset
from training.data.tabular import read_attribute_table


def _digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def figures() -> np.ndarray:
    """[N, A] 0/1 attributes of 4000 sampled people (sampling only, no drawing)."""
    rng = np.random.default_rng(0)
    people = [sample_figure(rng) for _ in range(4000)]
    return np.array([[person.has(a) for a in ATTRIBUTES] for person in people], dtype=float)


def _column(table: np.ndarray, name: str) -> np.ndarray:
    return table[:, ATTRIBUTES.index(name)].astype(bool)


def test_about_25_attributes_in_groups() -> None:
    assert 24 <= len(ATTRIBUTES) <= 28
    assert len(set(ATTRIBUTES)) == len(ATTRIBUTES)
    assert sum(len(names) for names in ATTRIBUTE_GROUPS.values()) == len(ATTRIBUTES)


def test_exclusive_groups_hold_exactly_one(figures: np.ndarray) -> None:
    for names in (ATTRIBUTE_GROUPS["age"], ATTRIBUTE_GROUPS["view"], ("short_sleeve", "long_sleeve"),
                  ("trousers", "shorts", "skirt")):
        assert np.all(sum(_column(figures, n).astype(int) for n in names) == 1), names


def test_attributes_co_occur_like_pedestrian_attributes(figures: np.ndarray) -> None:
    female, child = _column(figures, "female"), _column(figures, "age_child")
    assert _column(figures, "long_hair")[female].mean() > 0.6 > 0.2 > _column(figures, "long_hair")[~female].mean()
    assert _column(figures, "skirt")[~female].sum() == 0
    assert _column(figures, "backpack")[child].mean() > 2 * _column(figures, "backpack")[~child].mean()
    assert not np.any(_column(figures, "long_coat") & _column(figures, "short_sleeve"))


def test_what_the_back_view_hides_is_never_labelled(figures: np.ndarray) -> None:
    back = _column(figures, "view_back")
    assert back.sum() > 0
    assert _column(figures, "glasses")[back].sum() == 0
    assert _column(figures, "upper_logo")[back].sum() == 0


def test_every_attribute_is_present_and_absent_often_enough(figures: np.ndarray) -> None:
    frequency = figures.mean(axis=0)
    assert frequency.min() > 0.04, ATTRIBUTES[int(frequency.argmin())]
    assert frequency.max() < 0.9, ATTRIBUTES[int(frequency.argmax())]


def test_dataset_is_deterministic_and_read_by_the_attribute_table_reader(tmp_path: Path) -> None:
    generate_attributes_dataset(tmp_path / "a", num_train=10, num_val=4, height=64, width=32, seed=1)
    generate_attributes_dataset(tmp_path / "b", num_train=10, num_val=4, height=64, width=32, seed=1, workers=2)
    generate_attributes_dataset(tmp_path / "c", num_train=10, num_val=4, height=64, width=32, seed=2)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")

    val = read_attribute_table(tmp_path / "a" / "annotations" / "attributes_val.csv")
    assert val.labels == ATTRIBUTES
    assert len(val.samples) == 4
    for sample in val.samples:
        with Image.open(sample.path) as image:
            assert image.size == (32, 64)
        assert set(np.unique(sample.target)) <= {0.0, 1.0}
    groups = json.loads((tmp_path / "a" / "annotations" / "attribute_groups.json").read_text())
    assert groups == {k: list(v) for k, v in ATTRIBUTE_GROUPS.items()}


def test_cli_writes_the_attributes_task(tmp_path: Path) -> None:
    assert cli_main(["data", "attributes", "--out", str(tmp_path), "--train", "3", "--val", "2",
                     "--image-size", "48", "--workers", "1"]) == 0
    assert len(read_attribute_table(tmp_path / "annotations" / "attributes_train.csv").samples) == 3

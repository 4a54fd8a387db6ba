"""bench.servers starts every kind of server the serving benchmarks compare, for real, and each answers /predict
on the model it was given, with the settings it was given."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from bench.servers import serve

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]


def predict(url: str, jpeg: bytes) -> dict:
    response = httpx.post(f"{url}/predict", files={"files": ("photo.jpg", jpeg, "image/jpeg")}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def probabilities(answer: dict) -> dict[str, float]:
    return {label["name"]: label["probability"] for label in answer["results"][0]["labels"]}


@pytest.fixture()
def repository(model_repository: Path, tmp_path: Path) -> Path:
    """The tiny model with a config.json of its own (as `labelserve tune` writes one)."""
    root = tmp_path / "repository"
    (root / "tiny").mkdir(parents=True)
    (root / "tiny" / "1").symlink_to(model_repository / "tiny" / "1")
    (root / "tiny" / "config.json").write_text(json.dumps({"max_batch_size": 2, "decode_threads": 1}))
    return root


def test_labelserve_serves_its_defaults_and_labelserve_tuned_the_models_config(
        repository: Path, photo_jpegs: list[tuple[str, bytes]], reference) -> None:
    jpeg = photo_jpegs[0][1]
    expected = reference(jpeg)
    for kind, batch in (("labelserve", 8), ("labelserve-tuned", 2)):  # 8: the bundle's cap, config.json ignored
        with serve(kind, repository, "tiny", max_batch_size="16") as server:
            answer = probabilities(predict(server.url, jpeg))
            log = server.log_path.read_text()
        assert answer == pytest.approx(expected, abs=1e-5)
        assert f"max batch {batch})" in log, log


def test_labelserve_tuned_without_a_config_says_how_to_make_one(model_repository: Path) -> None:
    with pytest.raises(FileNotFoundError, match="labelserve tune"), serve("labelserve-tuned", model_repository,
                                                                          "tiny"):
        pass


def test_the_baseline_answers_with_every_labels_probability(repository: Path,
                                                            photo_jpegs: list[tuple[str, bytes]]) -> None:
    with serve("baseline", repository, "tiny") as server:
        probabilities = predict(server.url, photo_jpegs[0][1])["probabilities"]
    labels = json.loads((repository / "tiny" / "1" / "manifest.json").read_text())["labels"]
    assert len(probabilities) == len(labels) and all(0.0 <= p <= 1.0 for p in probabilities)


def test_an_earlier_commit_serves_from_a_worktree_of_its_own(repository: Path,
                                                             photo_jpegs: list[tuple[str, bytes]], reference) -> None:
    head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()
    jpeg = photo_jpegs[0][1]
    before = worktrees()
    with serve(f"labelserve@{head}", repository, "tiny") as server:
        assert len(worktrees()) == len(before) + 1
        answer = probabilities(predict(server.url, jpeg))
    assert answer == pytest.approx(reference(jpeg), abs=1e-5)
    assert worktrees() == before  # removed again


def worktrees() -> list[str]:
    listing = subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "list", "--porcelain"], check=True,
                             capture_output=True, text=True).stdout
    return [line for line in listing.splitlines() if line.startswith("worktree ")]

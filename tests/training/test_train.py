"""The training run end to end on the tiny dataset, checkpoints, and learning on a fixed batch."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from training.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint, save_checkpoint
from training.losses import create_loss
from training.models import create_model, list_heads

HEAD_KWARGS = {
    "query2label": {"hidden_dim": 32, "keep_input_proj": True, "ffn_dim": 64},
    "mldecoder": {"embed_dim": 32, "ffn_dim": 64, "num_heads": 4},
}


def test_run_writes_every_artefact(tiny_checkpoint: Path) -> None:
    run = tiny_checkpoint.parent
    for name in ("config.yaml", "best.pt", "last.pt", "metrics.csv", "curves.png"):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert len(rows) == 1 and 0.0 <= float(rows[0]["mAP"]) <= 1.0
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoint_rebuilds_the_same_model(tiny_checkpoint: Path, tiny_dataset: Path) -> None:
    checkpoint = load_checkpoint(tiny_checkpoint)
    assert len(checkpoint.labels) == 20 and checkpoint.task == "objects"
    assert checkpoint.preprocess.height == 64
    assert "mAP" in checkpoint.metrics
    model = model_from_checkpoint(checkpoint)
    again = model_from_checkpoint(load_checkpoint(tiny_checkpoint))
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(images).logits, again(images).logits)


def test_checkpoint_save_is_atomic(tiny_checkpoint: Path, tmp_path: Path) -> None:
    target = tmp_path / "ckpt.pt"
    good = load_checkpoint(tiny_checkpoint)
    save_checkpoint(target, good)
    before = target.read_bytes()
    broken = Checkpoint(**{**good.__dict__, "train_config": {"unpicklable": lambda: None}})
    with pytest.raises(Exception):  # noqa: B017  (whatever torch.save raises for a lambda)
        save_checkpoint(target, broken)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary file left behind


def test_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ValueError, match="not a labelserve checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("head", list_heads())
def test_loss_goes_down_on_a_fixed_batch(head: str) -> None:
    torch.manual_seed(0)
    model = create_model(head, "test_resnet", 6, head_kwargs=HEAD_KWARGS.get(head, {}))
    images = torch.randn(8, 3, 64, 64)
    targets = (torch.rand(8, 6) > 0.6).float()
    criterion = create_loss("asl")
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = criterion(model(images).logits, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses

"""Training on the attributes task end to end: the attribute-table reader, mA and instance metrics, and Label2Label's
two heads reported side by side (its own attribute-query network as `aux_mA`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import load_config
from training.data.synthetic_attributes import generate_attributes_dataset
from training.train import run_training

pytestmark = pytest.mark.slow


def test_label2label_trains_on_attributes_and_reports_both_heads(tmp_path: Path) -> None:
    written = generate_attributes_dataset(tmp_path / "data", num_train=48, num_val=16, height=64, width=32, seed=0)
    config = load_config(None, [
        "task=attributes", "data.format=attributes", f"data.train_annotations={written['train']}",
        f"data.val_annotations={written['val']}", "data.image_size=64", "data.batch_size=16", "data.workers=0",
        "model.backbone=test_resnet", "model.head=label2label", "model.head_kwargs={hidden_dim: 64, ffn_dim: 128}",
        "loss.name=bce", "optim.epochs=1", "tensorboard=false", f"output_dir={tmp_path / 'run'}",
    ])
    metrics = run_training(config, show_progress=False).best_metrics
    for name in ("mAP", "mA", "instance_acc", "instance_f1", "aux_mA"):
        assert 0.0 <= metrics[name] <= 1.0, name

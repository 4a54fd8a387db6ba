"""Training on CUDA with mixed precision. Skipped where no GPU is present (CI never has one)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.checkpoint import load_checkpoint, model_from_checkpoint
from training.config import load_config
from training.loop import Precision
from training.train import run_training

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; none is visible to torch here"),
]


def test_amp_picks_a_cuda_dtype() -> None:
    precision = Precision.for_device(torch.device("cuda"), amp=True)
    assert precision.dtype in (torch.bfloat16, torch.float16)
    assert Precision.for_device(torch.device("cuda"), amp=False).dtype is None


def test_cuda_training_run_and_cpu_reload(tiny_dataset: Path, tmp_path: Path) -> None:
    config = load_config(None, [
        f"data.train_annotations={tiny_dataset / 'annotations' / 'instances_train.json'}",
        f"data.val_annotations={tiny_dataset / 'annotations' / 'instances_val.json'}",
        "data.image_size=64", "data.batch_size=16", "data.workers=2", "device=cuda", "amp=true",
        "model.backbone=test_resnet", "model.head=query2label",
        "model.head_kwargs={hidden_dim: 64, keep_input_proj: true}", "optim.epochs=2", f"output_dir={tmp_path}",
    ])
    result = run_training(config, show_progress=False)
    assert all(torch.isfinite(torch.tensor(row["train_loss"])) for row in result.history)
    checkpoint = load_checkpoint(result.best_checkpoint)
    assert all(t.device.type == "cpu" for t in checkpoint.model_state.values())
    model = model_from_checkpoint(checkpoint)
    images = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        cpu_logits = model(images).logits
        gpu_logits = model.cuda()(images.cuda()).logits.cpu()
    torch.testing.assert_close(gpu_logits, cpu_logits, atol=1e-3, rtol=1e-3)

"""Training options end to end on the tiny dataset: EMA, schedules, weight decay groups, SAM, resume, early stop,
logs, augmentation, and multi-process DDP on gloo."""

from __future__ import annotations

import copy
import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from labelserve.preprocess import PreprocessSpec, normalise
from training.checkpoint import load_checkpoint
from training.config import OptimConfig, TrainConfig, load_config
from training.data.transforms import cutout, eval_transform, train_transform
from training.models import create_model
from training.optim import SAM, build_scheduler, create_ema, parameter_groups
from training.train import run_training

TINY_IMAGE_SIZE = 64  # the tiny_dataset fixture's image size


def _config(dataset: Path, out: Path, *overrides: str) -> TrainConfig:
    return load_config(None, [
        f"data.train_annotations={dataset / 'annotations' / 'instances_train.json'}",
        f"data.val_annotations={dataset / 'annotations' / 'instances_val.json'}",
        f"data.image_size={TINY_IMAGE_SIZE}", "data.batch_size=16", "data.workers=0", "model.backbone=test_resnet",
        "model.head=linear", "optim.lr=1e-3", f"output_dir={out}", "tensorboard=false", *overrides,
    ])


def _rows(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((out / "metrics.csv").open()))


def test_ema_is_evaluated_and_logged(tiny_dataset: Path, tmp_path: Path) -> None:
    result = run_training(_config(tiny_dataset, tmp_path, "optim.epochs=2", "optim.ema_decay=0.9",
                                  "tensorboard=true"), show_progress=False)
    rows = _rows(tmp_path)
    assert len(rows) == 2 and all("ema_mAP" in row for row in rows)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    last = load_checkpoint(result.last_checkpoint)
    assert last.training_state["ema"] is not None


def test_ema_update_rule() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    ema = create_ema(model, decay=0.75)
    start = ema.module[0].weight.clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].num_batches_tracked.fill_(7)
    ema.update(model)
    torch.testing.assert_close(ema.module[0].weight, 0.75 * start + 0.25 * model[0].weight)
    assert int(ema.module[1].num_batches_tracked) == 7  # integer buffers are copied, not averaged
    assert not any(p.requires_grad for p in ema.module.parameters())
    with pytest.raises(ValueError, match="ema_decay must be in"):
        create_ema(model, decay=1.0)


def test_a_checkpoint_with_the_old_ema_layout_resumes(tiny_dataset: Path, tmp_path: Path) -> None:
    """last.pt as the hand-written ModelEma wrote it (its deep copy's state_dict, keyed like the model) still resumes.

    The stored EMA is made unlike the raw weights (halved), and the resumed run uses a decay so close to 1 that one
    more epoch leaves the EMA where it started: the new last.pt's EMA is the old one only if it was loaded.
    """
    config = _config(tiny_dataset, tmp_path / "a", "optim.epochs=1", "optim.ema_decay=0.9", "optim.schedule=cosine")
    written = run_training(config, show_progress=False).last_checkpoint
    payload = torch.load(written, map_location="cpu", weights_only=True)
    model = create_model("linear", "test_resnet", len(payload["labels"]))
    model.load_state_dict(payload["model_state"])
    old_module = copy.deepcopy(model).eval()  # the old ModelEma's `module`
    with torch.no_grad():
        for value in old_module.state_dict().values():
            if value.dtype.is_floating_point:
                value.mul_(0.5)
    old_ema = old_module.state_dict()
    payload["training_state"]["ema"] = old_ema
    old = tmp_path / "old" / "last.pt"
    old.parent.mkdir()
    torch.save(payload, old)

    resumed = run_training(_config(tiny_dataset, tmp_path / "b", "optim.epochs=2", "optim.ema_decay=0.9999999",
                                   "optim.schedule=cosine", f"resume={old}"), show_progress=False)
    ema = load_checkpoint(resumed.last_checkpoint).training_state["ema"]
    assert set(ema) == set(old_ema)
    weight = next(k for k, v in old_ema.items() if v.dtype.is_floating_point and v.ndim > 1)
    torch.testing.assert_close(ema[weight], old_ema[weight], rtol=1e-4, atol=1e-6)
    assert not torch.allclose(ema[weight], payload["model_state"][weight], rtol=1e-2, atol=1e-4)


def test_pointing_game_and_top3_on_data_with_boxes(tiny_dataset: Path, tmp_path: Path) -> None:
    result = run_training(_config(tiny_dataset, tmp_path, "optim.epochs=1"), show_progress=False)
    assert 0.0 <= result.best_metrics["pointing_game"] <= 1.0
    assert "CF1_top3" in result.best_metrics and "OF1_calibrated" in result.best_metrics


def test_resume_continues_where_it_stopped(tiny_dataset: Path, tmp_path: Path) -> None:
    first = run_training(_config(tiny_dataset, tmp_path / "a", "optim.epochs=3", "optim.schedule=cosine"),
                         show_progress=False)
    assert len(first.history) == 3
    partial = tmp_path / "b"
    run_training(_config(tiny_dataset, partial, "optim.epochs=3", "optim.schedule=cosine"), show_progress=False)
    (partial / "metrics.csv").unlink()
    checkpoint = load_checkpoint(partial / "last.pt")
    assert checkpoint.epoch == 3
    resumed = run_training(_config(tiny_dataset, tmp_path / "c", "optim.epochs=4", "optim.schedule=cosine",
                                   f"resume={partial / 'last.pt'}"), show_progress=False)
    assert [int(r["epoch"]) for r in resumed.history] == [1, 2, 3, 4]  # history carried over, one more epoch


def test_early_stopping(tiny_dataset: Path, tmp_path: Path) -> None:
    # lr 0 after the first epoch: nothing can improve, so patience 1 stops after epoch 3
    result = run_training(_config(tiny_dataset, tmp_path, "optim.epochs=10", "optim.early_stop_patience=1",
                                  "optim.schedule=cosine", "optim.lr=1e-9"), show_progress=False)
    assert len(result.history) < 10


def test_sam_trains(tiny_dataset: Path, tmp_path: Path) -> None:
    result = run_training(_config(tiny_dataset, tmp_path, "optim.epochs=1", "optim.sam_rho=0.05",
                                  "optim.optimizer=sgd", "optim.lr=0.01"), show_progress=False)
    assert np.isfinite(result.history[0]["train_loss"])


def test_sam_step_restores_then_steps() -> None:
    weight = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    sam = SAM(torch.optim.SGD([weight], lr=0.1), rho=0.5)
    (weight**2).sum().backward()  # grad [2, 4]
    sam.ascend()
    perturbed = weight.detach().clone()
    torch.testing.assert_close(perturbed, torch.tensor([1.0, 2.0]) + 0.5 * torch.tensor([2.0, 4.0]) / 20**0.5)
    (weight**2).sum().backward()  # gradient at the perturbed point
    sam.descend()
    torch.testing.assert_close(weight.detach(), torch.tensor([1.0, 2.0]) - 0.1 * 2 * perturbed)


def test_no_decay_on_bias_and_norm() -> None:
    model = create_model("query2label", "test_resnet", 4, head_kwargs={"hidden_dim": 32, "keep_input_proj": True})
    decay, no_decay = parameter_groups(model, 0.01, no_decay_bias_norm=True)
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert no_decay["weight_decay"] == 0.0
    assert len(parameter_groups(model, 0.01, no_decay_bias_norm=False)) == 1


def test_cosine_schedule_warms_up_then_decays() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(OptimConfig(lr=1.0, epochs=10, schedule="cosine", warmup_epochs=1), optimizer, 10)
    lrs = []
    for _ in range(100):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.1) and max(lrs) == pytest.approx(1.0) and lrs[-1] < 0.01


def test_cutout_hole_is_a_fraction_of_the_image() -> None:
    torch.manual_seed(1)
    image = Image.new("RGB", (100, 80), (0, 0, 0))
    changed = np.asarray(cutout(image, 0.5)).any(axis=2).sum()
    assert 400 <= changed <= 40 * 40  # up to a 40x40 square, clipped by the border; never 1-2 px
    transform = train_transform(PreprocessSpec(height=32, width=32), randaugment=True, cutout_fraction=0.5)
    assert transform(Image.new("RGB", (50, 40), (200, 10, 10))).shape == (3, 32, 32)


@pytest.mark.parametrize("policy", ["squash", "center_crop"])
def test_unaugmented_training_input_equals_the_evaluation_input(sample_photos: list[Image.Image],
                                                                 policy: str) -> None:
    """One resize in training: a centre crop is 0.875 of the image there too, not 0.875 ** 2."""
    spec = PreprocessSpec(height=48, width=48, resize=policy)
    photo = sample_photos[0]  # 640x427: the crop and the squash both change the picture
    trained_on = train_transform(spec, hflip=False)(photo)
    np.testing.assert_array_equal(trained_on.numpy(), eval_transform(spec)(photo).numpy())


def test_normalise_refuses_an_image_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="resize it first"):
        normalise(Image.new("RGB", (40, 32)), PreprocessSpec(height=32, width=32))


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(tiny_dataset: Path, tmp_path: Path) -> None:
    """torchrun with 2 gloo processes: rank 0 writes everything, each rank does half the steps."""
    overrides = [
        f"data.train_annotations={tiny_dataset / 'annotations' / 'instances_train.json'}",
        f"data.val_annotations={tiny_dataset / 'annotations' / 'instances_val.json'}",
        f"data.image_size={TINY_IMAGE_SIZE}", "data.batch_size=8", "data.workers=0", "model.backbone=test_resnet",
        "model.head=linear", "optim.epochs=1", "tensorboard=false", "threads=1", "device=cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = {}
    for nproc in (1, 2):
        out = tmp_path / f"np{nproc}"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                   "-m", "labelserve_tools.cli", "train", "--no-progress", "--set", *overrides, f"output_dir={out}"]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[nproc] = _rows(out)
    assert int(runs[2][0]["steps"]) == int(runs[1][0]["steps"]) // 2  # 64 images: 8 steps alone, 4 per rank of 2
    assert (tmp_path / "np2" / "best.pt").is_file()

"""The AAM paper's training strategy as configs (configs/aam_mldecoder.yaml, configs/aam_gcn.yaml), and OneCycle's
start/end factors that the strategy sets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.config import OptimConfig, load_config
from training.optim import build_scheduler
from training.train import run_training

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize(("name", "head", "scale", "lr", "ema"), [
    ("aam_mldecoder.yaml", "mldecoder", 23.0, 0.007, 0.9997),
    ("aam_gcn.yaml", "gcn", 17.0, 0.005, 0.9993),
])
def test_the_recipes_say_what_the_paper_trains_with(name: str, head: str, scale: float, lr: float,
                                                    ema: float) -> None:
    config = load_config(CONFIGS / name)
    assert (config.model.head, config.model.head_kwargs["scale"], config.loss.name) == (head, scale, "aam")
    assert config.loss.kwargs == {"margin": 0.0, "k": 0.7, "gamma_pos": 0.0, "gamma_neg": 0.0, "reduction": "sum"}
    optim = config.optim
    assert (optim.optimizer, optim.momentum, optim.lr, optim.weight_decay) == ("sgd", 0.9, lr, 5e-4)
    assert (optim.sam_rho, optim.ema_decay, optim.no_decay_bias_norm) == (0.05, ema, True)
    assert (optim.schedule, optim.pct_start, optim.onecycle_div_factor, optim.onecycle_final_div_factor) == (
        "onecycle", 0.2, 100.0, 1000.0)
    assert config.data.mean == config.data.std == (0.5, 0.5, 0.5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["aam_mldecoder.yaml", "aam_gcn.yaml"])
def test_each_recipe_trains(name: str, tiny_dataset: Path, tmp_path: Path) -> None:
    config = load_config(CONFIGS / name, [
        f"data.train_annotations={tiny_dataset / 'annotations' / 'instances_train.json'}",
        f"data.val_annotations={tiny_dataset / 'annotations' / 'instances_val.json'}",
        "data.image_size=64", "data.batch_size=16", "data.workers=0", "model.backbone=test_resnet",
        "model.head_kwargs.embed_dim=32" if "mldecoder" in name else "model.head_kwargs.embedding_dim=16",
        "optim.epochs=2", "tensorboard=false", f"output_dir={tmp_path}",
    ])
    result = run_training(config, show_progress=False)
    assert len(result.history) == 2 and result.best_checkpoint.is_file()
    assert "ema_mAP" in result.history[-1]  # the EMA weights were evaluated beside the raw ones


def test_onecycle_starts_and_ends_at_the_configured_fractions() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    config = OptimConfig(lr=0.007, epochs=1, onecycle_div_factor=100, onecycle_final_div_factor=1000)
    scheduler = build_scheduler(config, optimizer, steps_per_epoch=50)
    lrs = []
    for _ in range(50):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.007 / 100)
    assert max(lrs) == pytest.approx(0.007, rel=1e-3)
    assert lrs[-1] == pytest.approx(0.007 / 100 / 1000, rel=0.05)


def test_the_pretrained_config_is_the_bench_recipe_its_figures_come_from() -> None:
    """configs/pretrained.yaml (issue 19: the recipe README credits lived only in bench/accuracy.py) must stay the
    pretrained preset's query2label+ASL row, or the figures the guide quotes for it would not be its own."""
    from bench.accuracy import PRESETS, method_overrides, rows

    preset = PRESETS["pretrained"]
    (row,) = [r for r in rows(preset.width) if (r.task, r.name) == ("objects", "query2label+ASL")]
    bench = load_config(None, [*method_overrides(row, preset), f"data.image_size={preset.objects[2]}"])
    shipped = load_config(CONFIGS / "pretrained.yaml")
    assert (shipped.model, shipped.loss, shipped.optim, shipped.task, shipped.seed) == (
        bench.model, bench.loss, bench.optim, bench.task, bench.seed)
    # the loader's worker processes are the machine's business, not the recipe's
    assert shipped.data.model_copy(update={"workers": bench.data.workers}) == bench.data
    assert (shipped.model.backbone_kwargs, shipped.model.feature_index, shipped.data.mean) == (
        {"output_stride": 8}, -2, (0.5, 0.5, 0.5))

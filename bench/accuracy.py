"""Every seed method side by side on the synthetic benchmark: same backbone, image size, epochs and seed per task.

    python -m bench.accuracy --preset cpu          # this 2-core machine, from scratch, well under 30 minutes
    python -m bench.accuracy --preset pretrained   # this 2-core machine, ImageNet EfficientNet-Lite0, < 45 minutes
    python -m bench.accuracy --preset gpu          # a CUDA machine: more data, larger images, a real ResNet
    python -m bench.accuracy --preset smoke        # a minute: checks the harness, numbers mean nothing
    python -m bench.accuracy --preset hard         # one seed of the hard benchmark (bench/hard.py runs it over seeds)
    python -m bench.accuracy --preset pretrained --rescore bench/results/accuracy-pretrained.json  # new export

Trains and evaluates each row, exports it to ONNX, then prints mAP / CF1 / OF1 / mA / pointing game / parameters /
inference images per second, and writes JSON (bench/results/accuracy-<preset>-*.json). Rows: linear+BCE,
linear+ASL, query2label+ASL, mldecoder+ASL, mldecoder+AAM, gcn+ASL, gcn+AAM on `objects`; linear+BCE and
label2label+BCE on `attributes` (with the label2label attribute-query network's own mA beside it). Every row trains
with one shared AdamW recipe; the AAM rows use the loss settings of the paper's released configs (m 0, k 0.7; its
SGD + SAM recipe, configs/aam_*.yaml, is compared in bench/aam_ablation.py). The pointing game
is measured on what `/predict` returns: the exported model's attention, upsampled as the service does
(bench/pointing.py). `--rescore` re-exports the rows' saved checkpoints and measures their served pointing game
again, for when the export changes (a new attention readout) and retraining would give the same weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench._common import RESULTS_DIR, format_table, write_results
from bench.pointing import served_pointing_hits
from bench.predictions import RowPredictions
from labelserve.torch_device import resolve_torch_device
from training.checkpoint import load_checkpoint, model_from_checkpoint
from training.config import load_config
from training.train import run_training

logger = logging.getLogger("bench.accuracy")

CACHE = Path(".cache") / "bench"
CONFIGS = Path(__file__).resolve().parent.parent / "configs"
_IMAGENET = ("data.mean=[0.485,0.456,0.406]", "data.std=[0.229,0.224,0.225]")
_TF_LITE = ("data.mean=[0.5,0.5,0.5]", "data.std=[0.5,0.5,0.5]")  # what the EfficientNet-Lite0 weights expect
_SHARED_OPTIM = ("optim.lr=2e-3", "optim.weight_decay=1e-4")  # every row without a recipe of its own
# AMBinaryLoss as the released configs set it (configs/aam_*.yaml); the loss class keeps the reference class's own
# defaults (m 0.35, k 0.8), which trail ASL by 20-30 mAP here (bench/aam_ablation.py)
AAM_PAPER_LOSS = {"margin": 0.0, "k": 0.7, "gamma_pos": 0.0, "gamma_neg": 0.0, "reduction": "sum"}


@dataclass(frozen=True)
class Preset:
    """Data size, backbone and schedule shared by every row of a run."""

    objects: tuple[int, int, int]  # train images, val images, side
    attributes: tuple[int, int, int, int]  # train images, val images, height, width
    backbone: str
    backbone_overrides: tuple[str, ...]
    epochs: int
    batch_size: int
    workers: int
    width: int  # transformer heads' hidden size
    difficulty: str = "standard"  # standard | hard (training/data/synthetic_hard.py)


PRESETS = {
    "smoke": Preset(objects=(64, 32, 64), attributes=(64, 32, 64, 32), backbone="test_resnet",
                    backbone_overrides=("model.feature_index=-2", *_IMAGENET), epochs=1, batch_size=16, workers=0,
                    width=32),
    "cpu": Preset(objects=(2000, 500, 96), attributes=(2000, 500, 96, 48), backbone="test_resnet",
                  backbone_overrides=("model.feature_index=-2", *_IMAGENET), epochs=6, batch_size=32, workers=0,
                  width=128),
    # ImageNet-pretrained EfficientNet-Lite0 (the pretrained extra's packaged weights where the hub is unreachable),
    # its stride-16 stage (112 channels) run at stride 8 with dilated convolutions (same weights; 12x12 maps at
    # 96 px, where 6x6 cells of 16 px are coarser than most objects: +1 to +6 mAP and +5 to +11 points of pointing
    # game over stride 16, bench/attention_study.py); half the cpu preset's training images, so the nine rows fit
    # in 45 minutes on 2 cores
    "pretrained": Preset(objects=(1000, 500, 96), attributes=(1000, 500, 96, 48), backbone="tf_efficientnet_lite0",
                         backbone_overrides=("model.feature_index=-2", "model.backbone_kwargs={'output_stride': 8}",
                                             "model.pretrained=true", *_TF_LITE), epochs=6,
                         batch_size=32, workers=0, width=128),
    "gpu": Preset(objects=(12000, 2000, 192), attributes=(12000, 2000, 192, 96), backbone="resnet18",
                  backbone_overrides=_IMAGENET, epochs=12, batch_size=64, workers=8, width=256),
    # the hard benchmark (40 long-tailed labels, small occluded objects, distractors; occluded and smaller figures)
    # on the pretrained preset's backbone; sized so 8 rows x 3 seeds fit 90 minutes on 2 cores (bench/hard.py)
    "hard": Preset(objects=(1500, 600, 96), attributes=(1500, 600, 96, 48), backbone="tf_efficientnet_lite0",
                   backbone_overrides=("model.feature_index=-2", "model.backbone_kwargs={'output_stride': 8}",
                                       "model.pretrained=true", *_TF_LITE), epochs=4, batch_size=32, workers=0,
                   width=128, difficulty="hard"),
    # the same benchmark at a GPU session's size (bench/hard.py --full): more images, larger, more epochs, wider
    # heads; not yet timed on a GPU (an estimate: 25-35 s a row, 10-14 minutes for 8 rows x 3 seeds)
    "hard-full": Preset(objects=(4000, 1000, 128), attributes=(4000, 1000, 128, 64),
                        backbone="tf_efficientnet_lite0",
                        backbone_overrides=("model.feature_index=-2", "model.backbone_kwargs={'output_stride': 8}",
                                            "model.pretrained=true", *_TF_LITE), epochs=8, batch_size=64,
                        workers=8, width=256, difficulty="hard"),
    "hard-smoke": Preset(objects=(64, 32, 64), attributes=(64, 32, 64, 32), backbone="test_resnet",
                         backbone_overrides=("model.feature_index=-2", *_IMAGENET), epochs=1, batch_size=16,
                         workers=0, width=32, difficulty="hard"),
}


@dataclass(frozen=True)
class Row:
    """One method: head + loss on a task, trained with a recipe (a configs/*.yaml) or the shared AdamW one.

    `overrides` come last (ablations vary one setting of a row this way).
    """

    name: str
    task: str
    head: str
    loss: str
    head_kwargs: dict[str, Any] = field(default_factory=dict)
    recipe: str | None = None
    overrides: tuple[str, ...] = ()
    loss_kwargs: dict[str, Any] = field(default_factory=dict)


def rows(width: int) -> list[Row]:
    """The methods of the comparison, with transformer widths scaled to the preset."""
    decoder = {"embed_dim": width, "ffn_dim": 2 * width, "num_heads": 4}
    return [
        Row("linear+BCE", "objects", "linear", "bce"),
        Row("linear+ASL", "objects", "linear", "asl"),
        Row("query2label+ASL", "objects", "query2label", "asl",
            {"hidden_dim": width, "keep_input_proj": True, "ffn_dim": 2 * width}),
        Row("mldecoder+ASL", "objects", "mldecoder", "asl", decoder),
        Row("mldecoder+AAM", "objects", "mldecoder", "aam", {**decoder, "cosine": True, "scale": 23.0,
                                                             "token_activation": "leaky_relu"},
            loss_kwargs=AAM_PAPER_LOSS),
        Row("gcn+ASL", "objects", "gcn", "asl"),
        Row("gcn+AAM", "objects", "gcn", "aam", {"scale": 17.0}, loss_kwargs=AAM_PAPER_LOSS),
        Row("linear+BCE", "attributes", "linear", "bce"),
        Row("label2label+BCE", "attributes", "label2label", "bce", {"hidden_dim": width, "ffn_dim": 2 * width}),
    ]


def _variant(spec: Any, default: Any) -> str:
    """The cache folder's mark of a generator spec: none for the defaults (the folders they always had), else a
    digest of every knob, so data rendered with other knobs is never reused."""
    return "" if spec == default else "-" + hashlib.sha256(repr(spec).encode()).hexdigest()[:10]


def _objects_data(preset: Preset) -> tuple[str, list[str]]:
    from training.data.synthetic import ObjectsSpec, generate_objects_dataset
    from training.data.synthetic_hard import HARD_OBJECTS

    train, val, side = preset.objects
    spec = HARD_OBJECTS if preset.difficulty == "hard" else ObjectsSpec()
    root = CACHE / f"objects{_variant(spec, ObjectsSpec())}-{train}-{val}-{side}"
    if not (root / "annotations" / "instances_val.json").is_file():
        generate_objects_dataset(root, num_train=train, num_val=val, image_size=side, seed=0,
                                 workers=max(2, preset.workers), spec=spec)
    return "coco", [f"data.train_annotations={root / 'annotations' / 'instances_train.json'}",
                    f"data.val_annotations={root / 'annotations' / 'instances_val.json'}",
                    f"data.image_size={side}"]


def _attributes_data(preset: Preset) -> tuple[str, list[str]]:
    from training.data.synthetic_attributes import AttributesSpec, generate_attributes_dataset
    from training.data.synthetic_hard import HARD_ATTRIBUTES

    train, val, height, width = preset.attributes
    spec = HARD_ATTRIBUTES if preset.difficulty == "hard" else AttributesSpec()
    root = CACHE / f"attributes{_variant(spec, AttributesSpec())}-{train}-{val}-{height}x{width}"
    if not (root / "annotations" / "attributes_val.csv").is_file():
        generate_attributes_dataset(root, num_train=train, num_val=val, height=height, width=width, seed=0,
                                    workers=max(2, preset.workers), spec=spec)
    # a square network input keeps one config for every row; the figure is squashed, as the references squash
    return "attributes", [f"data.train_annotations={root / 'annotations' / 'attributes_train.csv'}",
                          f"data.val_annotations={root / 'annotations' / 'attributes_val.csv'}",
                          f"data.image_size={height}", "data.hflip=true"]


def _inference_speed(checkpoint: Path, side: int, device: torch.device, batch: int = 32) -> float:
    model = model_from_checkpoint(load_checkpoint(checkpoint)).to(device)
    images = torch.randn(batch, 3, side, side, device=device)
    with torch.no_grad():
        for _ in range(3):
            model(images)
        if device.type == "cuda":
            torch.cuda.synchronize()
        started, runs = time.perf_counter(), 0
        while time.perf_counter() - started < 2.0:
            model(images)
            runs += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
    return batch * runs / (time.perf_counter() - started)


def method_overrides(row: Row, preset: Preset) -> list[str]:
    """The `key=value` overrides that put a row's head, loss and schedule on the preset's backbone, data aside
    (configs/pretrained.yaml is the query2label+ASL row of the pretrained preset; a test holds them equal)."""
    return [
        f"task={row.task}", f"data.batch_size={preset.batch_size}", f"data.workers={preset.workers}",
        f"model.backbone={preset.backbone}", *preset.backbone_overrides, f"model.head={row.head}",
        f"model.head_kwargs={row.head_kwargs or {}}", f"loss.name={row.loss}",
        *((f"loss.kwargs={row.loss_kwargs}",) if row.loss_kwargs else ()), *(() if row.recipe else _SHARED_OPTIM),
        f"optim.epochs={preset.epochs}", "seed=0", "tensorboard=false",
    ]


def row_overrides(row: Row, preset: Preset, out: Path) -> tuple[Path | None, list[str]]:
    """The row's recipe file (or None) and the `key=value` overrides that put it on the preset's data and backbone."""
    fmt, data_overrides = (_objects_data if row.task == "objects" else _attributes_data)(preset)
    recipe = CONFIGS / row.recipe if row.recipe else None
    return recipe, [
        f"data.format={fmt}", *data_overrides, *method_overrides(row, preset),
        f"output_dir={out / (row.task + '-' + re.sub(r'[^A-Za-z0-9.]+', '-', row.name).strip('-'))}", *row.overrides,
    ]


def _served_pointing_hits(checkpoint: Path, config_data: Any, out: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """Export the checkpoint and score the served attention (bench/pointing.py) per val image: (hits, pairs)."""
    from export.repository import export_bundle

    if config_data.format != "coco":
        return None
    annotations = Path(config_data.val_annotations)
    bundle, _ = export_bundle(checkpoint, out / "repository", "model",
                              parity_images=[annotations.parent.parent / "images" / "val"])
    return served_pointing_hits(bundle, annotations)


def _served_pointing(checkpoint: Path, config_data: Any, out: Path) -> float | None:
    """Export the checkpoint and score the served attention (bench/pointing.py) on the val split."""
    scored = _served_pointing_hits(checkpoint, config_data, out)
    return None if scored is None else _pointing(*scored)


def _pointing(hits: np.ndarray, pairs: np.ndarray) -> float:
    return int(hits.sum()) / int(pairs.sum()) if pairs.sum() else float("nan")


def run_row(row: Row, preset: Preset, out: Path, served_pointing: bool = True) -> dict[str, Any]:
    """Train one method and collect its numbers (`served_pointing`: export it and score its served attention)."""
    return run_row_with_predictions(row, preset, out, served_pointing)[0]


def run_row_with_predictions(row: Row, preset: Preset, out: Path, served_pointing: bool = True,
                             measure_speed: bool = True) -> tuple[dict[str, Any], RowPredictions]:
    """`run_row`, also returning what the row predicted for each validation image (bench/predictions.py)."""
    row_started, cpu_started = time.perf_counter(), time.process_time()
    recipe, overrides = row_overrides(row, preset, out)
    config = load_config(recipe, overrides)
    started = time.perf_counter()
    result = run_training(config, show_progress=False)
    train_seconds = time.perf_counter() - started
    metrics = result.best_metrics
    checkpoint = load_checkpoint(result.best_checkpoint)
    model = model_from_checkpoint(checkpoint)
    scored = (_served_pointing_hits(result.best_checkpoint, config.data, Path(config.output_dir))
              if served_pointing else None)
    scores = result.best_scores
    assert scores is not None  # a single-process run always evaluates
    predictions = RowPredictions(
        labels=tuple(checkpoint.labels), probs=scores.probs, targets=scores.targets,
        train_positives=_train_positives(config), aux_probs=scores.aux_probs,
        pointing_hits=None if scored is None else scored[0], pointing_pairs=None if scored is None else scored[1])
    return {
        "method": row.name, "task": row.task, "recipe": row.recipe, "overrides": list(row.overrides),
        "loss_kwargs": row.loss_kwargs,
        "checkpoint": str(result.best_checkpoint),
        "mAP": metrics.get("mAP"), "CF1": metrics.get("CF1"),
        "OF1": metrics.get("OF1"), "mA": metrics.get("mA"), "aux_mA": metrics.get("aux_mA"),
        "pointing_game_raw": metrics.get("pointing_game"),
        "pointing_game": None if scored is None else _pointing(*scored),
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "images_per_s": _inference_speed(result.best_checkpoint, config.data.image_size,
                                          resolve_torch_device(config.device)) if measure_speed else None,
        "train_seconds": train_seconds, "epochs_run": len(result.history),
        "row_seconds": time.perf_counter() - row_started, "threads": torch.get_num_threads(),
        # CPU time of this process (all its threads): what the row costs, whatever else the machine was running
        "row_cpu_seconds": time.process_time() - cpu_started,
    }, predictions


def _train_positives(config: Any) -> np.ndarray:
    """Training images holding each label: which labels are frequent and which are the tail."""
    from training.data.readers import read_split

    return read_split(config.data.format, Path(config.data.train_annotations)).targets().sum(axis=0).astype(np.int64)


def current_commit() -> str:
    """The short hash of the checked-out commit (what produced a result), or "unknown"."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def rescore_pointing(document: dict[str, Any], preset: Preset, methods: list[str] | None = None) -> dict[str, Any]:
    """`document` (an accuracy JSON of `preset`) with the served pointing game of its objects rows measured again
    from their checkpoints, exported by the current code; each rescored row records the old figure and the commit."""
    by_key = {(row.task, row.name): row for row in rows(preset.width)}
    runs = CACHE / f"runs-{document['preset']}"
    for measured in document["rows"]:
        if measured["task"] != "objects" or (methods and measured["method"] not in methods):
            continue
        recipe, overrides = row_overrides(by_key[(measured["task"], measured["method"])], preset, runs)
        config = load_config(recipe, overrides)
        checkpoint = Path(measured.get("checkpoint") or Path(config.output_dir) / "best.pt")
        logger.info("rescoring %s from %s", measured["method"], checkpoint)
        previous = measured.get("pointing_game")
        measured["pointing_game"] = _served_pointing(checkpoint, config.data, Path(config.output_dir))
        measured["pointing_rescored"] = {"previous": previous, "commit": current_commit()}
    return document


def device_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"


def _table(results: list[dict[str, Any]]) -> str:
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}"

    table = [{"task": r["task"], "method": r["method"], "mAP": pct(r["mAP"]), "CF1": pct(r["CF1"]),
              "OF1": pct(r["OF1"]), "mA": pct(r["mA"]), "AQN mA": pct(r["aux_mA"]),
              "pointing": pct(r["pointing_game"]), "params (M)": f"{r['params_M']:.2f}",
              "img/s": f"{r['images_per_s']:.0f}", "train s": f"{r['train_seconds']:.0f}"} for r in results]
    return format_table(table, list(table[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--only", nargs="*", help="run only these methods (e.g. query2label+ASL)")
    parser.add_argument("--task", choices=["objects", "attributes"], help="run only this task's rows")
    parser.add_argument("--out", type=Path, help="JSON path (default: bench/results/accuracy-<preset>-<time>.json)")
    parser.add_argument("--rescore", type=Path, help="an accuracy JSON: re-measure its rows' served pointing game "
                        "from their checkpoints (with --only: those rows), rewrite it in place (or to --out)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("training.train", "training.distributed"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    preset = PRESETS[args.preset]
    if args.rescore:
        document = rescore_pointing(json.loads(args.rescore.read_text(encoding="utf-8")), preset, args.only)
        (args.out or args.rescore).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(_table(document["rows"]))
        return
    runs = CACHE / f"runs-{args.preset}"
    results: list[dict[str, Any]] = []
    selected = [r for r in rows(preset.width) if (not args.only or r.name in args.only)
                and (not args.task or r.task == args.task)]
    out = args.out or RESULTS_DIR / f"accuracy-{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    started = time.perf_counter()
    for index, row in enumerate(selected, start=1):
        logger.info("[%d/%d] %s on %s", index, len(selected), row.name, row.task)
        results.append(run_row(row, preset, runs))
        logger.info("[%d/%d] %s: mAP %.4f (%.0f s)", index, len(selected), row.name, results[-1]["mAP"],
                    results[-1]["train_seconds"])
        # rewritten after every row, so a run cut short still leaves what it measured
        write_results(f"accuracy-{args.preset}", {"preset": args.preset, "preset_config": preset.__dict__,
                                                  "device": device_name(), "rows": results,
                                                  "wall_seconds": time.perf_counter() - started}, out)
    print()
    print(_table(results))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()

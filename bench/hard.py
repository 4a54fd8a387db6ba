"""The hard benchmark over seeds: which of the papers' claims hold beyond what validation images and seeds move.

    python -m bench.hard --out bench/results/hard-cpu.json        # 8 rows x 3 seeds on 2 cores (< 90 min alone)
    python -m bench.hard --full --out bench/results/hard-gpu.json  # a GPU session's size (the hard-full preset)
    python -m bench.hard --statistics bench/results/hard-cpu.json  # summary and claims again, from the saved
                                                                   # predictions, without training

Each row of `ROWS` is bench/accuracy.py's row (same head, loss and recipe) on the hard data (40 long-tailed labels,
small occluded objects, distractors; smaller, occluded figures: training/data/synthetic_hard.py), trained once per
seed on the same data and scored on the same validation images (the seed sets the heads' initialisation, the batch
order and the augmentation). What each trained row predicted for every validation image is saved beside the JSON
(bench/predictions.py: `<out stem>/<task>-<method>-seed<N>.npz`), and the statistics come from those files
(bench/claims.py): per row the mean and standard deviation over seeds of mAP, the tail's mAP, CF1, mA and the
served pointing game; per claim the paired difference with a bootstrap interval over images and seeds, and a
verdict. The JSON is rewritten after every row, so a run cut short keeps what it measured; `--resume` continues it.
CPU seconds are recorded beside wall seconds: on a shared machine the first says what the run costs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import resource
import time
from pathlib import Path
from typing import Any

from bench._common import RESULTS_DIR, write_results
from bench.accuracy import CACHE, PRESETS, Row, current_commit, device_name, rows, run_row_with_predictions
from bench.claims import CLAIMS, decide, summarize, tail_labels
from bench.paired_bootstrap import mean_average_precision
from bench.predictions import RowPredictions, load_predictions, save_predictions

__all__ = ["ROWS", "hard_rows", "statistics_of"]

logger = logging.getLogger("bench.hard")

# what the claims compare (bench/claims.py): objects heads with ASL and AAM, attributes linear against Label2Label
ROWS = (("objects", "linear+ASL"), ("objects", "query2label+ASL"), ("objects", "mldecoder+ASL"),
        ("objects", "mldecoder+AAM"), ("objects", "gcn+ASL"), ("objects", "gcn+AAM"), ("attributes", "linear+BCE"),
        ("attributes", "label2label+BCE"))


def hard_rows(width: int) -> list[Row]:
    """bench/accuracy.py's rows named by `ROWS`, in that order."""
    by_key = {(row.task, row.name): row for row in rows(width)}
    return [by_key[key] for key in ROWS]


def _prediction_file(out: Path, task: str, method: str, seed: int) -> Path:
    return out.with_suffix("") / f"{task}-{re.sub(r'[^A-Za-z0-9.]+', '-', method).strip('-')}-seed{seed}.npz"


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the data-rendering workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def statistics_of(document: dict[str, Any], out: Path, replicates: int) -> dict[str, Any]:
    """`document` with each row's tail mAP, the per-row summary and the claims computed from its saved predictions
    (paths relative to `out`'s folder)."""
    loaded: dict[tuple[str, str], dict[int, RowPredictions]] = {}
    for row in document["rows"]:
        predictions = load_predictions(out.parent / row["predictions"])
        loaded.setdefault((row["task"], row["method"]), {})[row["seed"]] = predictions
        tail = tail_labels(predictions.train_positives)
        row["tail_mAP"] = mean_average_precision(predictions.probs, predictions.targets, tail)
    data = {}
    for (task, _), by_seed in loaded.items():
        first = next(iter(by_seed.values()))
        tail = tail_labels(first.train_positives)
        data[task] = {"labels": len(first.labels), "val_images": len(first.targets),
                      "tail_labels": [first.labels[i] for i in tail],
                      "tail_train_images": [int(first.train_positives[i]) for i in tail],
                      "train_images_per_label": [int(x) for x in first.train_positives]}
    claims = []
    for claim in CLAIMS:
        a, b = loaded.get((claim.task, claim.a), {}), loaded.get((claim.task, claim.b), {})
        seeds = sorted(set(a) & set(b))
        if seeds:
            logger.info("bootstrapping %s over %d seeds", claim.name, len(seeds))
            claims.append(decide(claim, [a[s] for s in seeds], [b[s] for s in seeds], replicates))
    return {**document, "data": data, "summary": summarize(document["rows"]), "claims": claims,
            "replicates": replicates}


def _train(args: argparse.Namespace, out: Path) -> None:
    preset_name = "hard-full" if args.full else args.preset
    preset = PRESETS[preset_name]
    previous = json.loads(out.read_text(encoding="utf-8")) if args.resume and out.is_file() else None
    results: list[dict[str, Any]] = list(previous["rows"]) if previous else []
    sessions: list[dict[str, Any]] = list(previous.get("sessions", [])) if previous else []
    done = {(r["task"], r["method"], r["seed"]) for r in results}
    plan = [(seed, row) for seed in args.seeds for row in hard_rows(preset.width)
            if (row.task, row.name, seed) not in done and (not args.only or row.name in args.only)]
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    session = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": current_commit(), "rows": 0}
    sessions.append(session)
    for index, (seed, row) in enumerate(plan, start=1):
        logger.info("[%d/%d] seed %d: %s on %s", index, len(plan), seed, row.name, row.task)
        seeded = Row(row.name, row.task, row.head, row.loss, row.head_kwargs, row.recipe, (*row.overrides,
                     f"seed={seed}"), row.loss_kwargs)
        result, predictions = run_row_with_predictions(seeded, preset, CACHE / f"runs-{preset_name}" / f"seed{seed}",
                                                       served_pointing=row.task == "objects", measure_speed=False)
        path = save_predictions(_prediction_file(out, row.task, row.name, seed), predictions)
        results.append({**result, "seed": seed, "predictions": path.relative_to(out.parent).as_posix(),
                        "load_average": os.getloadavg()[0]})
        session.update(rows=session["rows"] + 1, wall_seconds=time.perf_counter() - started,
                       cpu_seconds=_cpu_seconds() - cpu_started)
        logger.info("[%d/%d] seed %d: %s mAP %.4f%s, %.0f s wall, %.0f s CPU", index, len(plan), seed, row.name,
                    result["mAP"], f" mA {result['mA']:.4f}" if result.get("mA") is not None else "",
                    result["row_seconds"], result["row_cpu_seconds"])
        write_results(preset_name, _document(preset_name, preset, args.seeds, results, sessions), out)


def _document(name: str, preset: Any, seeds: list[int], results: list[dict[str, Any]],
              sessions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"preset": name, "preset_config": preset.__dict__, "seeds": seeds, "device": device_name(),
            "commit": sessions[-1]["commit"],  # the code that trained the last rows (each session names its own)
            "rows": results, "sessions": sessions,
            "wall_seconds": sum(s.get("wall_seconds", 0.0) for s in sessions),
            "cpu_seconds": sum(s.get("cpu_seconds", 0.0) for s in sessions)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the GPU session's size (--preset hard-full)")
    parser.add_argument("--preset", choices=[name for name in PRESETS if name.startswith("hard")], default="hard",
                        help="hard (this 2-core machine), hard-full (a GPU), hard-smoke (a minute: checks the harness)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default: 0 1 2)")
    parser.add_argument("--only", nargs="*", help="run only these methods (e.g. query2label+ASL)")
    parser.add_argument("--out", type=Path, help="JSON path (default: bench/results/hard-<time>.json); the "
                        "predictions go to the folder of the same name")
    parser.add_argument("--resume", action="store_true", help="keep the rows --out already has, run the rest")
    parser.add_argument("--statistics", type=Path, metavar="JSON",
                        help="only recompute summary and claims of this run from its saved predictions")
    parser.add_argument("--replicates", type=int, default=2000, help="bootstrap replicates (default: 2000)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("training.distributed").setLevel(logging.WARNING)
    out = args.statistics or args.out or RESULTS_DIR / f"hard-{time.strftime('%Y%m%d-%H%M%S')}.json"
    if not args.statistics:
        _train(args, out)
    if not out.is_file():
        parser.error(f"{out} holds no run: nothing was left to train")
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    document = statistics_of(json.loads(out.read_text(encoding="utf-8")), out, args.replicates)
    document["statistics_seconds"] = {"wall": time.perf_counter() - started, "cpu": _cpu_seconds() - cpu_started}
    out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    for claim in document["claims"]:
        for name, d in claim["differences"].items():
            print(f"{claim['name']}: {name} {100 * d['mean']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}] "
                  f"-> {d['verdict']}")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()

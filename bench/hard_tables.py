"""README tables of the hard benchmark (bench/hard.py): every row over seeds, and each paper's claim with its interval.

Registered with `bench.readme_tables`; the verdicts are read from the committed intervals here, never written by hand.
"""

from __future__ import annotations

from typing import Any

from bench.accuracy_tables import markdown_table, preset_line
from bench.paired_bootstrap import verdict
from bench.readme_tables import register_table

__all__ = ["claims_table", "rows_table"]

_STATISTIC_NAMES = {"mAP": "mAP", "tail_mAP": "tail mAP", "mA": "mA", "pointing_game": "pointing game (served)"}


def _spread(entry: dict[str, Any], name: str, scale: float = 100.0, digits: int = 1) -> str:
    value = entry.get(name)
    if not value:
        return "-"
    return f"{scale * value['mean']:.{digits}f} ± {scale * value['std']:.{digits}f}"


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def _caption(document: dict[str, Any]) -> str:
    a_train, a_val, height, width = document["preset_config"]["attributes"]
    seeds = ", ".join(str(s) for s in document["seeds"])
    statistics = document.get("statistics_seconds", {})  # the bootstrap, after training
    wall = document.get("wall_seconds", 0.0) + statistics.get("wall", 0.0)
    cpu = document.get("cpu_seconds", 0.0) + statistics.get("cpu", 0.0)
    command = "python -m bench.hard" + (" --full" if document["preset"] == "hard-full" else "")
    caption = (f"`{command}`: {preset_line(document)} on the objects task, {a_train} train / {a_val} val figures at "
               f"{height}x{width} on the attributes task; seeds {seeds}; {document['device']}, "
               f"{document['created_at'][:10]}; {wall / 60:.0f} min wall, {cpu:.0f} CPU seconds in all, training and "
               f"statistics ({cpu / 2 / 60:.0f} min of 2 cores).")
    if document.get("source"):
        caption += f" {document['source']}"
    return caption


def rows_table(documents: list[dict[str, Any]]) -> str:
    """Mean ± standard deviation over seeds of each row (percentages; seconds per seed)."""
    document = documents[0]
    header = ["task", "method", "seeds", "mAP", "tail mAP", "CF1", "mA", "pointing game (served)", "train s",
              "CPU s"]
    rows = [[s["task"], s["method"], str(len(s["seeds"])), _spread(s, "mAP"), _spread(s, "tail_mAP"),
             _spread(s, "CF1"), _spread(s, "mA"), _spread(s, "pointing_game"),
             _spread(s, "train_seconds", 1.0, 0), _spread(s, "row_cpu_seconds", 1.0, 0)]
            for s in document["summary"]]
    data = document["data"]
    tail = "; ".join(f"{task}: {len(d['tail_labels'])} of {d['labels']} labels, {min(d['tail_train_images'])}-"
                     f"{max(d['tail_train_images'])} training images each (the most frequent label: "
                     f"{max(d['train_images_per_label'])})" for task, d in data.items())
    return (_caption(document) + f" Tail = the rarest third of the labels by training images ({tail}).\n\n"
            + markdown_table(header, rows, numeric_from=2))


def claims_table(documents: list[dict[str, Any]]) -> str:
    """Each claim's paired difference A - B (points), its 95 % bootstrap interval and the verdict it gives."""
    document = documents[0]
    summary = {(s["task"], s["method"]): s for s in document["summary"]}
    rows = []
    for claim in document["claims"]:
        for name, d in claim["differences"].items():
            a, b = summary[(claim["task"], claim["a"])], summary[(claim["task"], claim["b"])]
            rows.append([claim["name"], claim["paper"], _STATISTIC_NAMES[name], f"{claim['a']} {_spread(a, name)}",
                         f"{claim['b']} {_spread(b, name)}", _points(d["mean"]),
                         f"[{_points(d['low'])}, {_points(d['high'])}]",
                         " / ".join(_points(x) for x in d["per_seed"]), verdict(d["low"], d["high"])])
    caption = (f"A − B in points, paired over seeds {', '.join(map(str, document['seeds']))} and the same "
               f"validation images; 95 % interval from {document['replicates']} bootstrap replicates drawing seeds "
               "and images with replacement (bench/paired_bootstrap.py). Verdict: reproduces when the interval lies "
               "above 0, reversed when below, level when it holds 0.")
    header = ["claim", "paper", "metric", "A", "B", "A − B", "95 % interval", "per seed", "verdict"]
    return caption + "\n\n" + markdown_table(header, rows, numeric_from=5)


for _name in ("cpu", "gpu"):
    register_table(f"hard-{_name}-rows", f"bench/results/hard-{_name}.json")(rows_table)
    register_table(f"hard-{_name}-claims", f"bench/results/hard-{_name}.json")(claims_table)

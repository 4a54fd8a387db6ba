"""README tables of the accuracy benchmarks (bench/accuracy.py, bench/aam_ablation.py, bench/attention_study.py).

Registered with `bench.readme_tables`; each reads committed JSON under bench/results/ and renders markdown.
"""

from __future__ import annotations

from typing import Any

from bench.readme_tables import register_table

__all__ = ["markdown_table", "preset_line"]


def markdown_table(header: list[str], rows: list[list[str]], numeric_from: int) -> str:
    """A GitHub markdown table; columns from `numeric_from` on are right-aligned."""
    align = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _minutes(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds / 60:.0f} min"


def preset_line(document: dict[str, Any]) -> str:
    """Backbone, objects data and schedule of an accuracy preset, as a caption says them."""
    config = document["preset_config"]
    train, val, side = config["objects"]
    pretrained = "ImageNet-pretrained" if "model.pretrained=true" in config["backbone_overrides"] else "from scratch"
    stage = "stride-16 stage" if "model.feature_index=-2" in config["backbone_overrides"] else "last stage"
    if any("'output_stride': 8" in override for override in config["backbone_overrides"]):
        stage += " dilated to stride 8"
    return (f"`{config['backbone']}` ({pretrained}, {stage}), {train} train / {val} val images at {side} px, "
            f"{config['epochs']} epochs, batch {config['batch_size']}")


def _accuracy(documents: list[dict[str, Any]]) -> str:
    document = documents[0]
    caption = (f"`python -m bench.accuracy --preset {document['preset']}`: {preset_line(document)}; "
               f"{document['device']}, {document['created_at'][:10]}, {_minutes(document.get('wall_seconds'))} "
               "in all.")
    if document.get("source"):
        caption += f" {document['source']}"
    header = ["task", "method", "mAP", "CF1", "OF1", "mA", "AQN mA", "pointing game (served)",
              "pointing game (raw maps)", "params (M)", "img/s", "train s"]
    rows = [[r["task"], r["method"], _pct(r["mAP"]), _pct(r["CF1"]), _pct(r["OF1"]), _pct(r.get("mA")),
             _pct(r.get("aux_mA")), _pct(r.get("pointing_game")), _pct(r.get("pointing_game_raw")),
             f"{r['params_M']:.2f}", f"{r['images_per_s']:.0f}", f"{r['train_seconds']:.0f}"]
            for r in document["rows"]]
    return caption + "\n\n" + markdown_table(header, rows, numeric_from=2)


def _ablation(documents: list[dict[str, Any]]) -> str:
    document = documents[0]
    caption = (f"`python -m bench.aam_ablation --preset {document['preset']}`: {preset_line(document)}; "
               f"{document['created_at'][:10]}, {_minutes(document.get('wall_seconds'))} in all. "
               "Δ is mAP against the same head with ASL.")
    if document.get("source"):
        caption += f" {document['source']}"
    baseline: dict[str, float] = {}
    rows = []
    for r in document["rows"]:
        is_baseline = r["method"].endswith("+ASL")
        if is_baseline:
            baseline[r["head"]] = r["mAP"]
        delta = "" if is_baseline else f"{100 * (r['mAP'] - baseline[r['head']]):+.1f}"
        rows.append([r["head"], r["variant"], _pct(r["mAP"]), delta, _pct(r["CF1"]), f"{r['train_seconds']:.0f}"])
    return caption + "\n\n" + markdown_table(["head", "variant", "mAP", "Δ mAP", "CF1", "train s"], rows, 2)


def _attention_study(documents: list[dict[str, Any]]) -> str:
    document = documents[0]
    caption = (f"`python -m bench.attention_study` on `{document['annotations']}` "
               f"({document['rows'][0]['pairs']} label/box pairs), {document['created_at'][:10]}: pointing game of "
               "each way of reading a model's attention, upsampled as `/predict` returns it.")
    if document.get("source"):
        caption += f" {document['source']}"
    rows = [[r["model"], readout, "x".join(map(str, r["grid"])), _pct(r["mAP"]), _pct(value)]
            for r in document["rows"] for readout, value in r["readouts"].items()]
    return caption + "\n\n" + markdown_table(["model", "readout", "grid", "mAP", "pointing game"], rows, 2)


register_table("attention-study-pretrained", "bench/results/attention-study-pretrained.json")(_attention_study)
for _preset in ("cpu", "pretrained", "gpu"):
    register_table(f"accuracy-{_preset}", f"bench/results/accuracy-{_preset}.json")(_accuracy)
for _preset in ("cpu", "pretrained"):
    register_table(f"aam-ablation-{_preset}", f"bench/results/aam-ablation-{_preset}.json")(_ablation)

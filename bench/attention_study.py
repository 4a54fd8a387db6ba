"""Which Query2Label attention localises? Every way of reading a trained model's cross-attention, on the pointing game.

    python -m bench.attention_study .cache/bench/runs-pretrained/objects-query2label-ASL/best.pt [more best.pt ...]
    python -m bench.attention_study --train pretrained --variants "no encoder layer" "stride 16"   # train first

For each checkpoint (models that differ in architecture: encoder layers, decoder layers, feature stride; `--train`
trains those of `ARCHITECTURES` on an accuracy preset's data, like bench/accuracy.py's query2label+ASL row) the
cross-attention of every decoder layer and head is captured with forward hooks, then reduced in each of the ways in
`READOUTS` (which layer, how heads are combined, before or after the softmax), beside the model's own readouts
(Query2Label's exported "relevance" and the earlier "rollout", training/models/query2label.py). Each map is resized
with the service's own `upsample_attention` to the size `/predict` returns and scored like bench/pointing.py.
Linear-head checkpoints are scored on their class activation map for comparison. Prints a table and writes JSON
(bench/results/attention-study-*.json).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench._common import RESULTS_DIR, format_table, write_results
from bench.accuracy import CACHE, PRESETS, Preset, Row, rows, run_row
from bench.pointing import SERVED_MAX_SIDE, _hits
from labelserve.preprocess import preprocess
from training.checkpoint import load_checkpoint, model_from_checkpoint
from training.data.dataset import load_rgb
from training.data.readers import read_split
from training.models.layers import MultiHeadAttention
from training.models.query2label import Query2LabelHead

__all__ = ["EXPORTED", "OWN_READOUTS", "READOUTS", "ROLLOUT", "capture_cross_attention", "study_checkpoint"]

Readout = Callable[[list[torch.Tensor]], torch.Tensor]  # per-layer logits [B, H, K, HW] -> maps [B, K, HW]


def _softmax_mean(logits: torch.Tensor) -> torch.Tensor:
    return logits.softmax(dim=-1).mean(dim=1)  # average of the heads' distributions


EXPORTED = ("relevance: each input token's part of the label's logit, through both decoder layers' attention and "
            "the encoder's mixing (exported)")
ROLLOUT = "rollout: attention x value's logit contribution, both layers, rolled through the encoder at half identity"
OWN_READOUTS = {EXPORTED: "relevance", ROLLOUT: "rollout"}  # the head's own `attention_readout` options
READOUTS: dict[str, Readout] = {
    "last layer, mean of heads' softmax": lambda layers: _softmax_mean(layers[-1]),
    "first layer, mean of heads' softmax": lambda layers: _softmax_mean(layers[0]),
    "mean of layers, mean of heads' softmax": lambda layers: torch.stack([_softmax_mean(x) for x in layers]).mean(0),
    "last layer, softmax of mean logits": lambda layers: layers[-1].mean(dim=1).softmax(dim=-1),
    "last layer, max of heads' softmax": lambda layers: layers[-1].softmax(dim=-1).amax(dim=1),
    "first layer, softmax of mean logits": lambda layers: layers[0].mean(dim=1).softmax(dim=-1),
}


def architectures(preset: Preset) -> dict[str, Row]:
    """Query2Label variants Query2Label's own options allow, on top of the accuracy preset's query2label+ASL row."""
    q2l = next(row for row in rows(preset.width) if row.name == "query2label+ASL")

    def variant(suffix: str, head_kwargs: dict[str, Any], *overrides: str) -> Row:
        return Row(f"{q2l.name} {suffix}", q2l.task, q2l.head, q2l.loss, {**q2l.head_kwargs, **head_kwargs},
                   q2l.recipe, overrides)

    dilated = any("'output_stride': 8" in override for override in preset.backbone_overrides)
    other_stride = (variant("stride16", {}, "model.backbone_kwargs={}") if dilated
                    else variant("stride8", {}, "model.backbone_kwargs={'output_stride': 8}"))
    return {
        "no encoder layer": variant("enc0", {"enc_layers": 0}),
        "one decoder layer": variant("dec1", {"dec_layers": 1}),
        "stride 16" if dilated else "stride 8 (dilated)": other_stride,
    }


def capture_cross_attention(head: Query2LabelHead) -> tuple[list[torch.Tensor], Callable[[], None]]:
    """Wrap each decoder layer's cross-attention so it stores its pre-softmax logits `[B, heads, K, HW]` per forward.

    The decoder calls `MultiHeadAttention.attend` (module forward hooks do not see it), so the instances' `attend`
    is wrapped. Returns the list the wrappers fill (cleared by the caller between batches) and a function removing
    the wrappers.
    """
    captured: list[torch.Tensor] = []
    modules = [layer.cross_attn for layer in head.decoder]

    def wrap(module: MultiHeadAttention) -> Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        attend = module.attend

        def recording(query: torch.Tensor, key: torch.Tensor,
                      value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            q = module._split(module.q_proj(query)) * module.head_dim**-0.5
            k = module._split(module.k_proj(key))
            captured.append((q @ k.transpose(-2, -1)).detach())
            return attend(query, key, value)

        return recording

    for module in modules:
        module.attend = wrap(module)  # type: ignore[method-assign]

    def remove() -> None:
        for module in modules:
            del module.attend  # the class's method again

    return captured, remove


def study_checkpoint(checkpoint_path: Path, annotations: Path, batch_size: int = 50,
                     max_side: int = SERVED_MAX_SIDE) -> dict[str, Any]:
    """Pointing game of every readout of one checkpoint (or of its own attention output for other heads)."""
    checkpoint = load_checkpoint(checkpoint_path)
    model = model_from_checkpoint(checkpoint)
    data = read_split("coco", annotations, labels=tuple(checkpoint.labels))
    head = model.head
    is_q2l = isinstance(head, Query2LabelHead)
    # a str: the model's own `attention` output with that readout (Query2Label's "relevance" is what is exported);
    # None: the model's own output, for other heads
    readouts: dict[str, Readout | str | None] = {**OWN_READOUTS, **READOUTS} if is_q2l else {"own": None}
    captured, remove = capture_cross_attention(head) if is_q2l else ([], lambda: None)
    totals = {name: [0, 0] for name in readouts}
    try:
        for start in range(0, len(data.samples), batch_size):
            chunk = data.samples[start:start + batch_size]
            images = [load_rgb(str(s.path)) for s in chunk]
            batch = torch.from_numpy(np.stack([preprocess(image, checkpoint.preprocess) for image in images]))
            own = {}
            for name, readout in readouts.items():
                if readout is None or isinstance(readout, str):
                    if isinstance(readout, str):
                        head.attention_readout = readout
                    captured.clear()
                    with torch.no_grad():
                        own[name] = model(batch).attention
            grid = next(iter(own.values())).shape[-2:]
            for name, readout in readouts.items():
                maps = own[name] if name in own else readout(captured).reshape(len(chunk), -1, *grid)
                for sample, image, sample_maps in zip(chunk, images, maps.numpy(), strict=True):
                    hits, pairs = _hits(sample, sample_maps, image.size, max_side)
                    totals[name][0] += hits
                    totals[name][1] += pairs
    finally:
        remove()
    config = checkpoint.model_config
    return {
        "checkpoint": str(checkpoint_path), "head": config["head"], "feature_index": config.get("feature_index", -1),
        "head_kwargs": config.get("head_kwargs", {}), "mAP": checkpoint.metrics.get("mAP"),
        "grid": list(grid), "readouts": {name: hits / pairs for name, (hits, pairs) in totals.items()},
        "pairs": next(iter(totals.values()))[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", type=Path, nargs="*", help="best.pt files trained on the same objects data")
    parser.add_argument("--train", choices=sorted(PRESETS), help="first train ARCHITECTURES on this preset's data")
    parser.add_argument("--variants", nargs="*", help="with --train: only these ARCHITECTURES names")
    parser.add_argument("--annotations", type=Path, help="val split (default: the first checkpoint's val_annotations)")
    parser.add_argument("--labels", nargs="*", help="a name per checkpoint for the table (default: its folder)")
    parser.add_argument("--out", type=Path, help="JSON path (default: bench/results/attention-study-<time>.json)")
    args = parser.parse_args()
    checkpoints, names = list(args.checkpoints), list(args.labels or [p.parent.name for p in args.checkpoints])
    if args.train:
        preset = PRESETS[args.train]
        for name, row in architectures(preset).items():
            if args.variants and name not in args.variants:
                continue
            result = run_row(row, preset, CACHE / f"attention-{args.train}")
            checkpoints.append(Path(result["checkpoint"]))
            names.append(f"{row.name.rsplit(' ', 1)[0]}, {name}")
    if not checkpoints:
        parser.error("give checkpoints, or --train a preset")
    annotations = args.annotations or Path(load_checkpoint(checkpoints[0]).train_config["data"]["val_annotations"])
    started = time.perf_counter()
    results = []
    for name, path in zip(names, checkpoints, strict=True):
        results.append({"model": name, **study_checkpoint(path, annotations)})
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in results[-1]["readouts"].items()), flush=True)
    out = args.out or RESULTS_DIR / f"attention-study-{time.strftime('%Y%m%d-%H%M%S')}.json"
    write_results("attention-study", {"annotations": str(annotations), "rows": results,
                                      "wall_seconds": time.perf_counter() - started}, out)
    table = [{"model": r["model"], "grid": "x".join(map(str, r["grid"])), "readout": k, "pointing": f"{100 * v:.1f}"}
             for r in results for k, v in r["readouts"].items()]
    print()
    print(format_table(table, list(table[0])))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()

"""What `labelserve predict` shows and writes: a table per image, and attention overlays as PNG files."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from labelserve.overlay import attention_overlay, decode_attention
from labelserve.schemas import ImageResult, PredictResponse

__all__ = ["format_table", "write_overlays"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _table(result: ImageResult) -> list[str]:
    width = max([len("label"), *(len(label.name) for label in result.labels)])
    predicted = set(result.predicted)
    lines = [f"  {'label':<{width}}  probability  predicted"]
    lines += [f"  {label.name:<{width}}  {label.probability:>11.4f}  {'yes' if label.name in predicted else ''}"
              .rstrip() for label in result.labels]
    return lines


def format_table(answer: PredictResponse) -> str:
    """One block per image: its name and size, then its labels (most probable first) and whether predicted."""
    blocks = []
    for result in answer.results:
        heading = f"{result.filename}  {result.width}x{result.height}  {answer.model} v{answer.version}"
        if result.id:
            heading += f"  id {result.id}"
        blocks.append("\n".join([heading, *_table(result)]))
    return "\n\n".join(blocks) + "\n"


def write_overlays(answer: PredictResponse, images: Sequence[Path], out_dir: Path,
                   opacity: float = 0.6) -> list[Path]:
    """Write `<out_dir>/<image stem>.<label>.png` for every attention map of the answer: the map over its image.

    Args:
        answer: a /predict answer asked with attention=true, one result per path of `images`, in order.
        images: the files that were sent.
        out_dir: created if missing.
        opacity: how strongly the heat covers the image where attention peaks.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for result, path in zip(answer.results, images, strict=True):
        if not result.attention:
            continue
        with Image.open(path) as image:
            image.load()
            for label, encoded in result.attention.items():
                target = out_dir / f"{_UNSAFE.sub('_', path.stem)}.{_UNSAFE.sub('_', label)}.png"
                attention_overlay(image, decode_attention(encoded), opacity).save(target)
                written.append(target)
    return written

"""Pointing game on what users get: the exported model's `attention` output, upsampled exactly as the service does.

    python -m bench.pointing models/demo .cache/demo/data-128px-4000-600-seed0/annotations/instances_val.json

Every validation image goes through the service's own path (decode, preprocess, onnxruntime on `model.onnx`); each
present label's map is resized with `service.pipeline.postprocess.upsample_attention` to the size `/predict` returns
(`attention_size`, longer side at most the service's default `attention_max_side`, 128 px). A hit is the brightest
pixel of that map falling inside one of the label's boxes. Bilinear upsampling makes flat tops (a peak in an edge
cell stays at its value from the cell's centre out to the border), so among equally bright pixels the point is the
one nearest the image centre (for an edge cell, its centre), not the first in row order (which would always sit on
the top or left border). Training's `pointing_game` scores the raw `h x w` maps at their cell centres; this is the
figure a user would measure.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from labelserve.bundle import MANIFEST_FILENAME, Bundle, list_versions, load_bundle
from service.pipeline import DecodeLimits, decode_image, to_network_input
from service.pipeline.postprocess import PostprocessOptions, attention_size, upsample_attention
from training.data.readers import read_split
from training.data.samples import MultiLabelSample

__all__ = ["SERVED_MAX_SIDE", "brightest_point", "open_bundle", "served_pointing_game", "served_pointing_hits"]

_NO_LIMITS = DecodeLimits(max_image_bytes=1 << 40, max_image_pixels=1 << 40)
SERVED_MAX_SIDE = PostprocessOptions().attention_max_side  # the size /predict returns maps at unless asked otherwise


def open_bundle(path: Path) -> Bundle:
    """A bundle folder, or a model folder (its newest version)."""
    if not (path / MANIFEST_FILENAME).is_file():
        path = path / str(list_versions(path)[-1])
    return load_bundle(path)


def brightest_point(values: np.ndarray) -> tuple[int, int]:
    """(row, col) of the brightest pixel of `[H, W]`; among ties (within 1e-6 of the maximum), the one nearest the
    image centre."""
    peak = float(values.max())
    rows, cols = np.nonzero(values >= peak - 1e-6 * max(abs(peak), 1e-30))
    centre_row, centre_col = (values.shape[0] - 1) / 2, (values.shape[1] - 1) / 2
    nearest = int(np.argmin((rows - centre_row) ** 2 + (cols - centre_col) ** 2))
    return int(rows[nearest]), int(cols[nearest])


def _hits(sample: MultiLabelSample, maps: np.ndarray, image_size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """(hits, pairs) of one image: `maps` is `[C, h, w]`, `image_size` the decoded (width, height)."""
    width, height = image_size
    size = attention_size(image_size, max_side)
    hits = pairs = 0
    for label in np.flatnonzero(sample.target > 0.5):
        boxes = sample.boxes.get(int(label))
        if not boxes:
            continue
        values = upsample_attention(maps[label], size)  # [H', W'], as /predict renders it
        row, col = brightest_point(values)
        x, y = (col + 0.5) * width / size[0], (row + 0.5) * height / size[1]
        pairs += 1
        hits += any(bx <= x <= bx + bw and by <= y <= by + bh for bx, by, bw, bh in boxes)
    return hits, pairs


def served_pointing_game(bundle: Bundle, annotations: Path, image_root: Path | None = None, batch_size: int = 32,
                         max_side: int = SERVED_MAX_SIDE) -> dict[str, float]:
    """Pointing game of `bundle`'s exported attention on a COCO-format split with boxes.

    Returns:
        `pointing_game` (hits / pairs) and `pairs` (present labels that have boxes).
    """
    hits, pairs = served_pointing_hits(bundle, annotations, image_root, batch_size, max_side)
    total = int(pairs.sum())
    return {"pointing_game": int(hits.sum()) / total if total else float("nan"), "pairs": float(total)}


def served_pointing_hits(bundle: Bundle, annotations: Path, image_root: Path | None = None, batch_size: int = 32,
                         max_side: int = SERVED_MAX_SIDE) -> tuple[np.ndarray, np.ndarray]:
    """Per validation image (in the split's order): hits and (present label, box) pairs of the served attention, so
    the pointing game can be resampled over images (bench/paired_bootstrap.py)."""
    manifest = bundle.manifest
    if manifest.outputs.attention is None:
        raise ValueError(f"{bundle.path} was exported without attention maps")
    data = read_split("coco", annotations, image_root, labels=tuple(manifest.labels))
    session = ort.InferenceSession(str(bundle.file(manifest.engines[0].file)), providers=["CPUExecutionProvider"])
    outputs = [manifest.outputs.logits.name, manifest.outputs.attention.name]
    hits = np.zeros(len(data.samples), dtype=np.int32)
    pairs = np.zeros(len(data.samples), dtype=np.int32)
    for start in range(0, len(data.samples), batch_size):
        chunk = data.samples[start:start + batch_size]
        images = [decode_image(s.path.read_bytes(), s.path.name, _NO_LIMITS) for s in chunk]
        tensors = np.stack([to_network_input(image, manifest.input) for image in images])
        attention = session.run(outputs, {manifest.input_name: tensors})[1]  # [B, C, h, w]
        for offset, (sample, image, maps) in enumerate(zip(chunk, images, attention, strict=True)):
            hits[start + offset], pairs[start + offset] = _hits(sample, maps, image.size, max_side)
    return hits, pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="models/<name>[/<version>]")
    parser.add_argument("annotations", type=Path, help="COCO instances json of a split with boxes")
    parser.add_argument("--image-root", type=Path, help="default: <annotations folder>/../images")
    args = parser.parse_args()
    result = served_pointing_game(open_bundle(args.bundle), args.annotations, args.image_root)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""`labelserve visualize`: one picture of what a model sees — the image, its top labels, and an attention overlay per
predicted label, one row per image. Works from a training checkpoint (PyTorch) or an exported bundle (onnxruntime,
the file the service runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from labelserve.bundle import MANIFEST_FILENAME, list_versions, load_bundle
from labelserve.image import open_rgb
from labelserve.preprocess import PreprocessSpec, preprocess

__all__ = ["Prediction", "predict_file", "render_panel", "render_prediction"]


@dataclass(frozen=True)
class Prediction:
    """Scores of one image."""

    labels: tuple[str, ...]
    probs: np.ndarray  # [C]
    thresholds: np.ndarray  # [C]
    attention: np.ndarray | None  # [C, h, w]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _from_bundle(path: Path, image: Image.Image) -> Prediction:
    import onnxruntime as ort

    if not (path / MANIFEST_FILENAME).is_file():  # a model folder: take its newest version
        path = path / str(list_versions(path)[-1])
    bundle = load_bundle(path)
    manifest = bundle.manifest
    session = ort.InferenceSession(str(bundle.file(manifest.engines[0].file)), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {manifest.input_name: preprocess(image, manifest.input)[None]})
    attention = outputs[1][0] if len(outputs) > 1 else None
    return Prediction(manifest.labels, _sigmoid(outputs[0][0]), np.asarray(manifest.thresholds), attention)


def _from_checkpoint(path: Path, image: Image.Image) -> Prediction:
    import torch

    from training.checkpoint import load_checkpoint, model_from_checkpoint

    checkpoint = load_checkpoint(path)
    model = model_from_checkpoint(checkpoint)
    spec: PreprocessSpec = checkpoint.preprocess
    with torch.no_grad():
        output = model(torch.from_numpy(preprocess(image, spec))[None])
    thresholds = np.asarray(checkpoint.thresholds or [0.5] * len(checkpoint.labels))
    attention = output.attention[0].numpy() if output.attention is not None else None
    return Prediction(tuple(checkpoint.labels), torch.sigmoid(output.logits[0]).numpy(), thresholds, attention)


def predict_file(model_path: Path, image_path: Path) -> tuple[Image.Image, Prediction]:
    """Decode `image_path` (EXIF-rotated, RGB) and score it with a checkpoint file or a bundle folder."""
    image = open_rgb(image_path)
    predict = _from_bundle if model_path.is_dir() else _from_checkpoint
    return image, predict(model_path, image)


def _predicted(prediction: Prediction, max_maps: int) -> list[int]:
    order = np.argsort(-prediction.probs)
    return [int(i) for i in order if prediction.probs[i] >= prediction.thresholds[i]][:max_maps]


def _draw_row(axes: np.ndarray, image: Image.Image, prediction: Prediction, top_k: int, max_maps: int) -> None:
    """The image with its top-k labels in `axes[0]`, one overlay per predicted label in the next axes."""
    order = np.argsort(-prediction.probs)
    axes[0].imshow(image)
    lines = [f"{'*' if prediction.probs[i] >= prediction.thresholds[i] else ' '} {prediction.labels[i]} "
             f"{prediction.probs[i]:.2f}" for i in order[:top_k]]
    axes[0].set_title("\n".join(lines), fontsize=8, family="monospace", loc="left")
    maps = _predicted(prediction, max_maps) if prediction.attention is not None else []
    for axis, label in zip(axes[1:], maps, strict=False):
        heat = np.asarray(Image.fromarray(prediction.attention[label].astype(np.float32)).resize(
            image.size, Image.Resampling.BILINEAR))
        axis.imshow(image)
        axis.imshow(heat / max(float(heat.max()), 1e-12), cmap="jet", alpha=0.45, vmin=0, vmax=1)
        axis.set_title(f"{prediction.labels[label]} {prediction.probs[label]:.2f}", fontsize=9)
    for axis in axes:
        axis.axis("off")


def render_panel(items: list[tuple[Image.Image, Prediction]], out: Path, top_k: int = 5, max_maps: int = 6) -> Path:
    """Save a PNG with one row per image: the image with its top-k labels, then an overlay per predicted label."""
    if not items:
        raise ValueError("render_panel needs at least one image")
    columns = 1 + max(len(_predicted(p, max_maps)) if p.attention is not None else 0 for _, p in items)
    fig, axes = plt.subplots(len(items), columns, figsize=(3.2 * columns, (3.2 + 0.16 * top_k) * len(items)),
                             squeeze=False, layout="constrained")
    for row, (image, prediction) in zip(axes, items, strict=True):
        _draw_row(row, image, prediction, top_k, max_maps)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def render_prediction(image: Image.Image, prediction: Prediction, out: Path, top_k: int = 5,
                      max_maps: int = 6) -> Path:
    """Save a PNG: the image with its top-k labels, then one overlay per predicted label (up to `max_maps`)."""
    return render_panel([(image, prediction)], out, top_k, max_maps)

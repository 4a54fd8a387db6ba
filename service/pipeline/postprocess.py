"""Network outputs of one image -> label probabilities, decisions and (on request) attention maps.

Blocking (PNG encoding): call it from a worker thread.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from labelserve.bundle import Manifest

__all__ = ["PostprocessOptions", "Prediction", "attention_png", "attention_size", "postprocess", "sigmoid",
           "upsample_attention"]


@dataclass(frozen=True)
class PostprocessOptions:
    """What the request asked for."""

    top_k: int | None = None
    threshold: float | None = None  # overrides every per-label threshold of the manifest
    attention: bool = False
    attention_max_side: int = 512


@dataclass(frozen=True)
class Prediction:
    """The answer for one image."""

    labels: list[tuple[str, float]]  # (name, probability), most probable first, top_k-limited
    predicted: list[str]  # labels at or above their threshold, most probable first
    attention: dict[str, str] | None  # label -> base64 PNG, for predicted labels, when asked


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, float64."""
    values = np.asarray(logits, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -values))


def attention_size(image_size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """(width, height) of returned maps: the image's size, scaled down so the longer side is at most `max_side`."""
    width, height = image_size
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def upsample_attention(attention_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """One `[h, w]` map resized bilinearly (Pillow) to `size` (width, height): float32 `[height, width]`.

    The maps users see are these; benchmarks score the same array (bench/pointing.py).
    """
    source = Image.fromarray(np.asarray(attention_map, dtype=np.float32))  # float32 [h, w] -> mode F
    return np.asarray(source.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


def attention_png(attention_map: np.ndarray, size: tuple[int, int]) -> str:
    """One `[h, w]` map upsampled with `upsample_attention` to `size` (width, height), as base64 8-bit greyscale PNG.

    Normalised so 255 is the upsampled map's maximum; negative values (there should be none) become 0.
    """
    values = upsample_attention(attention_map, size)
    peak = float(values.max())
    scaled = np.clip(values / peak, 0.0, 1.0) * 255.0 if peak > 0 else np.zeros_like(values)
    buffer = io.BytesIO()
    Image.fromarray(np.rint(scaled).astype(np.uint8)).save(buffer, format="PNG")  # uint8 [H, W] -> mode L
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def postprocess(outputs: dict[str, np.ndarray], manifest: Manifest, image_size: tuple[int, int],
                options: PostprocessOptions) -> Prediction:
    """Turn one image's outputs into a `Prediction`.

    Args:
        outputs: this image's rows: logits `[C]` and, when asked, attention `[C, h, w]`.
        manifest: the model's manifest (labels, thresholds, output names).
        image_size: (width, height) of the uploaded image after EXIF orientation, for the attention maps.
        options: top-k, threshold override, attention.
    """
    probabilities = sigmoid(outputs[manifest.outputs.logits.name])  # [C]
    thresholds = (np.full(len(manifest.labels), options.threshold) if options.threshold is not None
                  else np.asarray(manifest.thresholds, dtype=np.float64))
    order = np.argsort(-probabilities, kind="stable")  # ties keep the manifest's label order
    ranked = [(manifest.labels[i], float(probabilities[i])) for i in order]
    predicted_indices = [int(i) for i in order if probabilities[i] >= thresholds[i]]
    predicted = [manifest.labels[i] for i in predicted_indices]
    attention = None
    if options.attention and manifest.outputs.attention is not None:
        maps = outputs[manifest.outputs.attention.name]  # [C, h, w]
        size = attention_size(image_size, options.attention_max_side)
        attention = {manifest.labels[i]: attention_png(maps[i], size) for i in predicted_indices}
    labels = ranked[: options.top_k] if options.top_k is not None else ranked
    return Prediction(labels=labels, predicted=predicted, attention=attention)

"""Network outputs of one image -> label probabilities, decisions and (on request) attention maps.

Attention maps come as PNGs (upsampled to the image's aspect ratio, longer side at most `attention_max_side`) or as
the network's own `[h, w]` grids (format `array`, the upsampling left to the client). A map carries h x w values
(7x7 to 14x14 for the usual strides), so a PNG of 128 px holds all of it: the default was 512 px with zlib's default
level, 9 ms per map, now 0.4 ms. PNG encoding blocks: call `postprocess` from a worker thread when it encodes.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from labelserve.bundle import Manifest
from labelserve.label_stats import probabilities as sigmoid

__all__ = ["AttentionFormat", "PostprocessOptions", "Prediction", "attention_png", "attention_size", "postprocess",
           "sigmoid", "upsample_attention"]

AttentionFormat = Literal["png", "array"]
_PNG_COMPRESS_LEVEL = 1  # smooth maps: level 1 is 3-4x faster than the default 6 for a tenth more bytes


@dataclass(frozen=True)
class PostprocessOptions:
    """What the request asked for."""

    top_k: int | None = None
    threshold: float | None = None  # overrides every per-label threshold of the manifest
    attention: bool = False
    attention_format: AttentionFormat = "png"
    attention_max_side: int = 128

    @property
    def encodes_png(self) -> bool:
        """Whether postprocessing encodes PNGs (then it belongs on a worker thread)."""
        return self.attention and self.attention_format == "png"


@dataclass(frozen=True)
class Prediction:
    """The answer for one image."""

    labels: list[tuple[str, float]]  # (name, probability), most probable first, top_k-limited
    predicted: list[str]  # labels at or above their threshold, most probable first
    attention: dict[str, str] | None  # label -> base64 PNG, for predicted labels, when asked as png
    attention_maps: dict[str, np.ndarray] | None = None  # label -> float32 [h, w], when asked as array
    probabilities: np.ndarray | None = None  # [C] every label's, in the manifest's order (what is kept for feedback)


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
    Image.fromarray(np.rint(scaled).astype(np.uint8)).save(buffer, format="PNG",  # uint8 [H, W] -> mode L
                                                           compress_level=_PNG_COMPRESS_LEVEL)
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
    attention = attention_maps = None
    if options.attention and manifest.outputs.attention is not None:
        maps = outputs[manifest.outputs.attention.name]  # [C, h, w]
        if options.attention_format == "array":
            attention_maps = {manifest.labels[i]: np.asarray(maps[i], dtype=np.float32) for i in predicted_indices}
        else:
            size = attention_size(image_size, options.attention_max_side)
            attention = {manifest.labels[i]: attention_png(maps[i], size) for i in predicted_indices}
    labels = ranked[: options.top_k] if options.top_k is not None else ranked
    return Prediction(labels=labels, predicted=predicted, attention=attention, attention_maps=attention_maps,
                      probabilities=probabilities)

"""The bundle's baseline: what the exported engine answers on the validation split, per label (labelserve.label_stats),
for the service to compare its served answers with.

Computed from the exported ONNX graph with onnxruntime on images decoded and preprocessed exactly as the service does
(labelserve.preprocess, DCT-scaled JPEG decode included), so a served window and its baseline differ only by what
the images show, not by how they were read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from labelserve.label_stats import Baseline
from labelserve.preprocess import PreprocessSpec, preprocess
from training.data.dataset import load_rgb

__all__ = ["compute_baseline"]

logger = logging.getLogger(__name__)

_BATCH = 32
_PROGRESS_EVERY_S = 10.0


def compute_baseline(onnx_path: Path, input_name: str, logits_name: str, spec: PreprocessSpec,
                     thresholds: Sequence[float], images: Sequence[Path], source: str) -> Baseline:
    """Run `images` through the exported graph and summarise its logits per label; logs progress on long splits."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    started = last_report = time.monotonic()
    chunks = []
    for start in range(0, len(images), _BATCH):
        batch = np.stack([preprocess(load_rgb(str(path), spec), spec) for path in images[start:start + _BATCH]])
        chunks.append(session.run([logits_name], {input_name: batch})[0])
        if time.monotonic() - last_report >= _PROGRESS_EVERY_S:
            last_report = time.monotonic()
            logger.info("baseline: %d of %d validation images", start + len(batch), len(images))
    baseline = Baseline.from_logits(np.concatenate(chunks), thresholds, source)
    logger.info("baseline from %d validation images in %.1f s: %.2f labels per image", baseline.images,
                time.monotonic() - started, baseline.mean_labels_per_image)
    return baseline

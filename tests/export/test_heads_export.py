"""Every registered head exports to ONNX with a dynamic batch and matches PyTorch (untrained weights, real photos)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from export.onnx import export_onnx
from export.parity import check_onnx_parity
from export.repository import load_parity_images
from export.wrapper import ExportWrapper
from labelserve.preprocess import PreprocessSpec
from training.models import create_model, list_heads

SMALL_HEADS = {
    "query2label": {"hidden_dim": 32, "keep_input_proj": True, "ffn_dim": 64},
    "mldecoder": {"embed_dim": 32, "ffn_dim": 64, "num_heads": 4},
}


@pytest.mark.parametrize("head", list_heads())
def test_head_exports_with_parity(head: str, photo_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model(head, "test_resnet", 9, head_kwargs=SMALL_HEADS.get(head, {}))
    spec = PreprocessSpec(height=64, width=96)
    wrapper = ExportWrapper(model)
    path = export_onnx(wrapper, spec, tmp_path / f"{head}.onnx")
    images = load_parity_images([photo_dir], spec)
    images = np.concatenate([images, images[::-1] * 0.5])  # 4 images, batch sizes 1 and 4
    report = check_onnx_parity(wrapper, path, images)
    assert report.passed, report.max_abs_diff

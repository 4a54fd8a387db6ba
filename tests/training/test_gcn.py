"""Graph head: ML-GCN's adjacency rule, the image-independent channel attention, and AAM training wiring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from export.onnx import export_onnx
from export.wrapper import ExportWrapper
from labelserve.preprocess import PreprocessSpec
from training.config import load_config
from training.models import LabelStatistics, create_model
from training.models.gcn import label_adjacency
from training.train import run_training


def test_adjacency_by_hand() -> None:
    # 3 labels: 0 and 1 always together, 2 alone
    targets = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0]])
    stats = LabelStatistics.from_targets(targets)
    np.testing.assert_array_equal(stats.counts, [3, 2, 1])
    adjacency = label_adjacency(stats.cooccurrence, stats.counts, threshold=0.4, reweight=0.25)
    # P(1|0) = 2/3 >= 0.4 and P(0|1) = 1 -> edges both ways; columns re-weighted to 0.25; identity added
    expected = np.array([[1, 0.25, 0], [0.25, 1, 0], [0, 0, 1]])
    np.testing.assert_allclose(adjacency, expected, atol=1e-5)
    # a weak co-occurrence stays below the threshold
    weak = label_adjacency(np.array([[0, 1], [1, 0]]), np.array([10, 10]))
    np.testing.assert_allclose(weak, np.eye(2), atol=1e-6)


def test_channel_attention_is_image_independent_and_cached() -> None:
    stats = LabelStatistics.from_targets(np.eye(5)[[0, 1, 0, 2, 3, 4, 0]])
    model = create_model("gcn", "test_resnet", 5, label_statistics=stats).eval()
    first = model.head.channel_attention()
    assert first is model.head.channel_attention()  # computed once in eval mode
    model.train()
    assert model.head._cached_attention is None


def test_graph_part_exports_as_a_constant(tmp_path: Path) -> None:
    import onnx

    model = create_model("gcn", "test_resnet", 6)
    path = export_onnx(ExportWrapper(model), PreprocessSpec(height=64, width=64), tmp_path / "gcn.onnx")
    graph = onnx.load(str(path)).graph
    assert not any("label_embedding" in i.name for i in graph.initializer)  # folded: only its result remains


def test_aam_needs_a_cosine_head(tiny_dataset: Path, tmp_path: Path) -> None:
    base = [
        f"data.train_annotations={tiny_dataset / 'annotations' / 'instances_train.json'}",
        f"data.val_annotations={tiny_dataset / 'annotations' / 'instances_val.json'}",
        "data.image_size=64", "data.workers=0", "model.backbone=test_resnet", "optim.epochs=1",
        f"output_dir={tmp_path}", "loss.name=aam",
    ]
    with pytest.raises(ValueError, match="cosine head"):
        run_training(load_config(None, [*base, "model.head=linear"]), show_progress=False)
    with pytest.raises(ValueError, match="disagrees"):
        run_training(load_config(None, [*base, "model.head=gcn", "loss.kwargs={scale: 3}"]), show_progress=False)
    result = run_training(load_config(None, [*base, "model.head=gcn"]), show_progress=False)
    assert np.isfinite(result.history[0]["train_loss"])
    saved = torch.load(result.best_checkpoint, weights_only=True)["model_state"]["head.adjacency"]
    assert not torch.allclose(saved, torch.eye(20))  # the data's graph, not the placeholder

"""Models: a timm backbone plus a registered head, built by `create_model`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.models import gcn as _gcn  # noqa: F401  (registers "gcn")
from training.models import label2label as _label2label  # noqa: F401  (registers "label2label")
from training.models import linear as _linear  # noqa: F401  (registers "linear")
from training.models import mldecoder as _mldecoder  # noqa: F401  (registers "mldecoder")
from training.models import query2label as _query2label  # noqa: F401  (registers "query2label")
from training.models.backbone import Backbone
from training.models.base import ModelOutput, MultiLabelModel
from training.models.gcn import label_adjacency
from training.models.registry import get_head, list_heads
from training.models.statistics import LabelStatistics

__all__ = ["Backbone", "LabelStatistics", "ModelOutput", "MultiLabelModel", "create_model", "list_heads"]


def create_model(
    head: str,
    backbone: str,
    num_classes: int,
    pretrained: bool = False,
    checkpoint_path: str | Path | None = None,
    feature_index: int = -1,
    head_kwargs: dict[str, Any] | None = None,
    backbone_kwargs: dict[str, Any] | None = None,
    label_statistics: LabelStatistics | None = None,
    pretrained_source: str = "auto",
) -> MultiLabelModel:
    """Build backbone + head by name.

    Args:
        head: a registered head name (`list_heads()`).
        backbone: a timm model name.
        num_classes: number of labels.
        pretrained: load the backbone's pretrained weights.
        pretrained_source: where from: `auto`, `timm` or a packaged source (`training.models.pretrained`).
        checkpoint_path: local backbone weights, where the hub cannot be reached.
        feature_index: backbone stage to attend over (-1 = last).
        head_kwargs: the head's own hyper-parameters.
        backbone_kwargs: passed to `timm.create_model`, e.g. `channels` or `drop_path_rate`.
        label_statistics: training-set label counts, for heads built on the label graph (`gcn`); a checkpoint
            restores what they computed, so rebuilding for inference does not need them.
    """
    head_cls = get_head(head)
    body = Backbone(backbone, pretrained=pretrained, checkpoint_path=checkpoint_path, feature_index=feature_index,
                    pretrained_source=pretrained_source, **(backbone_kwargs or {}))
    extra: dict[str, Any] = {}
    if getattr(head_cls, "uses_label_graph", False) and label_statistics is not None:
        extra["adjacency"] = label_adjacency(label_statistics.cooccurrence, label_statistics.counts)
    head_module = head_cls(body.channels, num_classes, **(head_kwargs or {}), **extra)
    config = {
        "head": head, "backbone": backbone, "num_classes": num_classes, "feature_index": feature_index,
        "backbone_kwargs": dict(backbone_kwargs or {}),
        "head_kwargs": dict(getattr(head_module, "init_kwargs", head_kwargs or {})),
    }
    return MultiLabelModel(body, head_module, config)

"""bench/attention_study.py reads the same cross-attention the model returns, and scores every readout."""

from __future__ import annotations

from pathlib import Path

import torch

from bench.attention_study import OWN_READOUTS, READOUTS, capture_cross_attention, study_checkpoint
from training.models import create_model


def test_the_last_layer_readout_is_the_softmax_readouts_own_attention() -> None:
    torch.manual_seed(0)
    model = create_model("query2label", "test_resnet", 5, head_kwargs={"hidden_dim": 32, "keep_input_proj": True,
                                                                       "ffn_dim": 64, "dec_layers": 2,
                                                                       "attention_readout": "softmax"}).eval()
    captured, remove = capture_cross_attention(model.head)
    with torch.no_grad():
        output = model(torch.randn(3, 3, 64, 64))
    remove()
    assert len(captured) == 2 and captured[0].shape == (3, 4, 5, 4)  # [B, heads, K, h*w]
    ours = READOUTS["last layer, mean of heads' softmax"](captured).reshape(output.attention.shape)
    torch.testing.assert_close(ours, output.attention)
    for name, readout in READOUTS.items():  # one non-negative map per label; the softmax ones are distributions
        maps = readout(captured)
        assert maps.shape == (3, 5, 4) and bool((maps >= 0).all()), name
        if "max" not in name:
            torch.testing.assert_close(maps.sum(-1), torch.ones(3, 5))


def test_every_readout_is_scored_on_a_real_checkpoint(tiny_checkpoint: Path, tiny_dataset: Path) -> None:
    result = study_checkpoint(tiny_checkpoint, tiny_dataset / "annotations" / "instances_val.json")
    assert set(result["readouts"]) == {*OWN_READOUTS, *READOUTS}
    assert result["pairs"] > 0 and all(0.0 <= v <= 1.0 for v in result["readouts"].values())

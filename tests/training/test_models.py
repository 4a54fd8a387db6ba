"""Models from the registry: shapes, attention maps, Query2Label's reference defaults, backbone loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from training.models import create_model, list_heads
from training.models.layers import sine_position_encoding
from training.models.query2label import Query2LabelHead

SMALL_Q2L = {"hidden_dim": 32, "keep_input_proj": True, "ffn_dim": 64, "num_heads": 4}
HEAD_KWARGS = {"query2label": SMALL_Q2L, "mldecoder": {"embed_dim": 32, "ffn_dim": 64, "num_heads": 4}}


@pytest.mark.parametrize("head", list_heads())
@pytest.mark.parametrize("batch", [1, 3])
def test_every_head_gives_logits_and_attention(head: str, batch: int) -> None:
    model = create_model(head, "test_resnet", num_classes=7, head_kwargs=HEAD_KWARGS.get(head, {})).eval()
    with torch.no_grad():
        out = model(torch.randn(batch, 3, 64, 64))
    assert out.logits.shape == (batch, 7)
    assert out.attention is not None and out.attention.shape == (batch, 7, 2, 2)
    torch.testing.assert_close(out.attention.sum(dim=(2, 3)), torch.ones(batch, 7))


def test_attention_follows_feature_size_and_stage() -> None:
    model = create_model("query2label", "test_resnet", 5, feature_index=-2, head_kwargs=SMALL_Q2L).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 96, 64)).attention.shape == (2, 5, 6, 4)  # stride 16


def test_query2label_reference_defaults() -> None:
    head = Query2LabelHead(in_channels=64, num_classes=10)
    assert isinstance(head.input_proj, torch.nn.Identity)  # no projection unless asked
    assert head.hidden_dim == 64 and len(head.encoder) == 1 and len(head.decoder) == 2
    assert all(layer.self_attn is None for layer in head.decoder)  # query self-attention removed
    assert head.decoder[0].ffn.linear1.out_features == 256  # FFN = 4 x d
    assert head.decoder[0].cross_attn.heads == 4
    kept = Query2LabelHead(64, 10, keep_first_self_attn=True, keep_other_self_attn=True)
    assert all(layer.self_attn is not None for layer in kept.decoder)


def test_query2label_validates_its_arguments() -> None:
    with pytest.raises(ValueError, match="keep_input_proj"):
        Query2LabelHead(in_channels=64, num_classes=3, hidden_dim=32)
    with pytest.raises(ValueError, match="attention_layer"):
        Query2LabelHead(in_channels=64, num_classes=3, attention_layer=2)
    with pytest.raises(ValueError, match="unknown head"):
        create_model("no-such-head", "test_resnet", 3)


def test_sine_encoding_matches_detr_layout() -> None:
    pos = sine_position_encoding(3, 5, 8)
    assert pos.shape == (15, 8)
    # first half encodes y: equal along a row; second half encodes x: equal along a column
    grid = pos.reshape(3, 5, 8)
    torch.testing.assert_close(grid[:, 0, :4], grid[:, 4, :4])
    torch.testing.assert_close(grid[0, :, 4:], grid[2, :, 4:])
    assert torch.all(pos.abs() <= 1)


def test_backbone_loads_a_local_checkpoint_file(tmp_path: Path) -> None:
    """The `pretrained` path for machines without hub access: timm weights from a file."""
    source = timm.create_model("test_resnet", pretrained=False)
    weights = tmp_path / "test_resnet.pth"
    torch.save(source.state_dict(), weights)
    model = create_model("linear", "test_resnet", 3, checkpoint_path=weights)
    loaded = model.backbone.body.state_dict()
    reference = source.state_dict()
    shared = [k for k in loaded if k in reference]
    assert shared, "no backbone weights matched by name"
    for key in shared:
        torch.testing.assert_close(loaded[key], reference[key])
    with pytest.raises(FileNotFoundError):
        create_model("linear", "test_resnet", 3, checkpoint_path=tmp_path / "missing.pth")


def test_backbone_kwargs_reach_timm() -> None:
    model = create_model("linear", "resnet18", 4, backbone_kwargs={"channels": (16, 32, 48, 64), "stem_width": 16})
    assert model.backbone.channels == 64
    assert model.config["backbone_kwargs"]["channels"] == (16, 32, 48, 64)


def test_attention_comes_from_the_chosen_decoder_layer() -> None:
    torch.manual_seed(0)
    first = Query2LabelHead(in_channels=32, num_classes=5, dec_layers=3, attention_layer=0,
                            attention_readout="softmax").eval()
    last = Query2LabelHead(in_channels=32, num_classes=5, dec_layers=3, attention_layer=-1,
                           attention_readout="softmax").eval()
    last.load_state_dict(first.state_dict())
    features = torch.randn(2, 32, 4, 6)
    with torch.no_grad():
        from_first, from_last = first(features), last(features)
    assert torch.equal(from_first.logits, from_last.logits)  # the choice only changes which map is returned
    assert from_first.attention.shape == from_last.attention.shape == (2, 5, 4, 6)
    assert not torch.allclose(from_first.attention, from_last.attention)


def _relevance_by_hand(head: Query2LabelHead, features: torch.Tensor) -> torch.Tensor:
    """The relevance readout from the layers' own attention, loop by loop (no einsum), for one image."""
    memory = head.input_proj(features).flatten(2).transpose(1, 2)  # [1, hw, d]
    dim, (height, width) = memory.shape[-1], features.shape[-2:]
    pos = sine_position_encoding(height, width, dim).unsqueeze(0)
    mixing = []
    for layer in head.encoder:
        memory, weights = layer.forward_with_weights(memory, pos)
        mixing.append(weights[0])
    query_pos = head.query_embed.weight.unsqueeze(0)
    tgt = torch.zeros_like(query_pos)
    relevance = torch.zeros(head.fc.weight.shape[0], height * width)
    for layer in head.decoder:
        tgt, weights, values = layer.forward_heads(tgt, memory, pos, query_pos)
        out_proj, head_dim = layer.cross_attn.out_proj.weight, values.shape[-1]
        for label in range(relevance.shape[0]):
            for h in range(values.shape[1]):
                for token in range(height * width):
                    carried = out_proj[:, h * head_dim:(h + 1) * head_dim] @ values[0, h, token]  # [d]
                    relevance[label, token] += weights[0, h, label, token] * (head.fc.weight[label] @ carried)
    for weights in reversed(mixing):
        relevance = 0.5 * relevance + 0.5 * relevance @ weights
    relevance = relevance.clamp(min=0)
    return relevance / relevance.sum(-1, keepdim=True)


def test_relevance_readout_weighs_attention_by_what_it_adds_to_the_logit() -> None:
    torch.manual_seed(0)
    head = Query2LabelHead(in_channels=16, num_classes=3, num_heads=2).eval()
    features = torch.randn(1, 16, 3, 4)
    softmax = Query2LabelHead(in_channels=16, num_classes=3, num_heads=2, attention_readout="softmax").eval()
    softmax.load_state_dict(head.state_dict())
    with torch.no_grad():
        out, plain = head(features), softmax(features)
        expected = _relevance_by_hand(head, features)
    assert head.attention_readout == "relevance"  # the default, and what the exported `attention` output carries
    torch.testing.assert_close(plain.logits, out.logits)  # the readout never changes the logits
    spoken_for = expected.sum(-1) > 0.99  # labels some token adds to; the others (nan: 0/0) fall back to softmax
    assert 0 < int(spoken_for.sum()) < 3  # this seed exercises both branches
    maps, softmax_maps = out.attention.reshape(3, 12), plain.attention.reshape(3, 12)
    torch.testing.assert_close(maps[spoken_for], expected[spoken_for], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(maps[~spoken_for], softmax_maps[~spoken_for])
    assert not torch.allclose(maps[spoken_for], softmax_maps[spoken_for])
    with pytest.raises(ValueError, match="attention_readout"):
        Query2LabelHead(in_channels=16, num_classes=3, attention_readout="gradcam")


def test_efficientnet_features_stop_at_the_returned_stage() -> None:
    """timm's EfficientNet feature wrapper runs every block; the backbone keeps only those its stage needs."""
    torch.manual_seed(0)
    body = create_model("linear", "tf_efficientnet_lite0", 3, feature_index=-2).backbone.eval()
    full = timm.create_model("tf_efficientnet_lite0", features_only=True, out_indices=(-2,)).eval()
    assert len(body.body.blocks) == 5 < len(full.blocks) == 7  # stride 16 ends after the fifth stage
    missing, unexpected = full.load_state_dict(body.body.state_dict(), strict=False)
    assert not unexpected and all(key.startswith(("blocks.5.", "blocks.6.")) for key in missing)
    images = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(body(images), full(images)[-1])

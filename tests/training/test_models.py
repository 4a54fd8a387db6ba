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


def _pieces(head: Query2LabelHead, features: torch.Tensor) -> tuple[list, list, torch.Tensor]:
    """The decoder's (weights, values), the encoder's traces and its output, as the head's forward computes them."""
    memory = head.input_proj(features).flatten(2).transpose(1, 2)
    pos = sine_position_encoding(*features.shape[-2:], memory.shape[-1]).unsqueeze(0)
    traces = []
    for layer in head.encoder:
        memory, trace = layer.forward_traced(memory, pos)
        traces.append(trace)
    encoded, memory = memory, head.encoder_norm(memory)
    query_pos = head.query_embed.weight.unsqueeze(0).expand(features.shape[0], -1, -1)
    tgt, cross = torch.zeros_like(query_pos), []
    for layer in head.decoder:
        tgt, weights, values = layer.forward_heads(tgt, memory, pos, query_pos)
        cross.append((weights, values))
    return cross, traces, encoded


def _centred(vector: torch.Tensor) -> torch.Tensor:
    return vector - vector.mean()


def _relevance_by_hand(head: Query2LabelHead, features: torch.Tensor) -> torch.Tensor:
    """The relevance readout of a one-encoder-layer, post-norm head, loop by loop (no einsum), for one image."""
    tokens = head.input_proj(features).flatten(2).transpose(1, 2)[0]  # [L, d]
    (height, width), dim = features.shape[-2:], tokens.shape[-1]
    pos = sine_position_encoding(height, width, dim)
    encoder = head.encoder[0]
    attention = encoder.self_attn
    heads, head_dim = attention.heads, attention.head_dim
    keyed = (tokens + pos).unsqueeze(0)
    _, enc_weights, enc_values = attention.attend(keyed, keyed, tokens.unsqueeze(0))
    summed = tokens + attention(keyed, keyed, tokens.unsqueeze(0))[0][0]
    normed = encoder.norm1(summed)
    residual = normed + encoder.ffn(normed)
    scale = 1 / (summed.var(-1, unbiased=False) + 1e-5).sqrt() / (residual.var(-1, unbiased=False) + 1e-5).sqrt()
    cross, _, _ = _pieces(head, features)
    labels, length = head.fc.weight.shape[0], tokens.shape[0]
    relevance = torch.zeros(labels, length)
    for layer, (weights, _) in zip(head.decoder, cross, strict=True):
        for label in range(labels):
            for h in range(heads):
                columns = slice(h * head_dim, (h + 1) * head_dim)
                # label's logit per unit of memory token, through this head's value and output projections
                direction = head.fc.weight[label] @ layer.cross_attn.out_proj.weight[:, columns] \
                    @ layer.cross_attn.v_proj.weight[columns]
                direction = _centred(_centred(direction * encoder.norm2.weight) * encoder.norm1.weight)
                for i in range(length):
                    read = weights[0, h, label, i] * scale[i]
                    relevance[label, i] += read * (direction @ tokens[i])
                    for g in range(heads):
                        enc_columns = slice(g * head_dim, (g + 1) * head_dim)
                        for j in range(length):
                            carried = attention.out_proj.weight[:, enc_columns] @ enc_values[0, g, j]
                            relevance[label, j] += read * enc_weights[0, g, i, j] * (direction @ carried)
    return relevance


def test_relevance_readout_follows_each_label_back_through_the_encoder() -> None:
    torch.manual_seed(0)
    head = Query2LabelHead(in_channels=16, num_classes=3, num_heads=2).eval()
    features = torch.randn(1, 16, 3, 4)
    with torch.no_grad():
        head.fc.weight[2].zero_()  # a label no token speaks for: its map falls back to the softmax
    softmax = Query2LabelHead(in_channels=16, num_classes=3, num_heads=2, attention_readout="softmax").eval()
    softmax.load_state_dict(head.state_dict())
    with torch.no_grad():
        out, plain = head(features), softmax(features)
        expected = _relevance_by_hand(head, features).clamp(min=0)
    assert head.attention_readout == "relevance"  # the default, and what the exported `attention` output carries
    torch.testing.assert_close(plain.logits, out.logits)  # the readout never changes the logits
    spoken_for = expected.sum(-1) > 0
    assert spoken_for.tolist() == [True, True, False]
    expected = expected / expected.sum(-1, keepdim=True)
    maps, softmax_maps = out.attention.reshape(3, 12), plain.attention.reshape(3, 12)
    torch.testing.assert_close(maps[spoken_for], expected[spoken_for], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(maps[~spoken_for], softmax_maps[~spoken_for])
    assert not torch.allclose(maps[spoken_for], softmax_maps[spoken_for])
    with pytest.raises(ValueError, match="attention_readout"):
        Query2LabelHead(in_channels=16, num_classes=3, attention_readout="gradcam")


@pytest.mark.parametrize("pre_norm", [False, True])
def test_relevance_accounts_for_all_of_a_labels_evidence_when_what_it_leaves_out_is_zero(pre_norm: bool) -> None:
    """With no biases and an encoder FFN that adds nothing, the decomposition is exact: the input tokens' parts sum
    to what the memory tokens carry to the label (attention x contribution, summed)."""
    torch.manual_seed(1)
    head = Query2LabelHead(in_channels=16, num_classes=4, num_heads=2, pre_norm=pre_norm).eval()
    with torch.no_grad():
        for name, param in head.named_parameters():
            if name.endswith("bias") or "encoder.0.ffn.linear2" in name:
                param.zero_()
        features = torch.randn(2, 16, 3, 4)
        cross, traces, encoded = _pieces(head, features)
        parts = head._relevance(cross, traces, encoded)
        whole = head._contributions(cross)
    assert parts.shape == (2, 4, 12)
    torch.testing.assert_close(parts.sum(-1), whole.sum(-1), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(parts, whole, atol=1e-3)  # the encoder moved evidence between tokens


def _rollout_by_hand(head: Query2LabelHead, features: torch.Tensor) -> torch.Tensor:
    """The rollout readout (attention x contribution on memory tokens, half-identity rollout), for one image."""
    cross, traces, _ = _pieces(head, features)
    height, width = features.shape[-2:]
    relevance = torch.zeros(head.fc.weight.shape[0], height * width)
    for layer, (weights, values) in zip(head.decoder, cross, strict=True):
        out_proj, head_dim = layer.cross_attn.out_proj.weight, values.shape[-1]
        for label in range(relevance.shape[0]):
            for h in range(values.shape[1]):
                for token in range(height * width):
                    carried = out_proj[:, h * head_dim:(h + 1) * head_dim] @ values[0, h, token]  # [d]
                    relevance[label, token] += weights[0, h, label, token] * (head.fc.weight[label] @ carried)
    for trace in reversed(traces):
        relevance = 0.5 * relevance + 0.5 * relevance @ trace.weights[0].mean(0)
    return relevance


def test_rollout_readout_weighs_attention_by_what_it_adds_to_the_logit() -> None:
    torch.manual_seed(0)
    head = Query2LabelHead(in_channels=16, num_classes=3, num_heads=2, enc_layers=2, attention_readout="rollout")
    head.eval()
    features = torch.randn(1, 16, 3, 4)
    with torch.no_grad():
        maps = head(features).attention.reshape(3, 12)
        expected = _rollout_by_hand(head, features).clamp(min=0)
    spoken_for = expected.sum(-1) > 0
    assert int(spoken_for.sum()) > 0
    expected = expected / expected.sum(-1, keepdim=True)
    torch.testing.assert_close(maps[spoken_for], expected[spoken_for], rtol=1e-4, atol=1e-6)


def test_every_readout_gives_a_distribution_per_label_for_any_encoder_depth() -> None:
    torch.manual_seed(0)
    features = torch.randn(2, 16, 3, 5)
    for enc_layers in (0, 1, 2):
        for readout in ("relevance", "rollout", "softmax"):
            head = Query2LabelHead(in_channels=16, num_classes=3, num_heads=2, enc_layers=enc_layers,
                                   attention_readout=readout).eval()
            with torch.no_grad():
                maps = head(features).attention
            assert maps.shape == (2, 3, 3, 5) and bool((maps >= 0).all()), (enc_layers, readout)
            torch.testing.assert_close(maps.sum(dim=(-2, -1)), torch.ones(2, 3))


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

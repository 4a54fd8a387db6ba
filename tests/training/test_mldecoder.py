"""ML-Decoder: group mapping, the batched group FC equals the reference's per-group loop, scaling to many labels."""

from __future__ import annotations

import resource

import torch

from training.models.mldecoder import MLDecoderHead


def test_groups_default_to_min_100_k() -> None:
    assert MLDecoderHead(16, 20, embed_dim=32, ffn_dim=64).num_groups == 20
    head = MLDecoderHead(16, 250, embed_dim=32, ffn_dim=64)
    assert head.num_groups == 100 and head.per_group == 3
    assert not head.queries.requires_grad  # frozen random queries, as the reference


def test_group_fc_matches_the_reference_loop() -> None:
    torch.manual_seed(0)
    head = MLDecoderHead(16, 23, num_groups=5, embed_dim=32, ffn_dim=64, num_heads=4).eval()
    features = torch.randn(3, 16, 4, 4)
    with torch.no_grad():
        logits = head(features).logits
        memory = head._tokens(features)
        hidden, _ = head.decoder(head.queries.unsqueeze(0).expand(3, -1, -1), memory)
        out = torch.zeros(3, head.num_groups, head.per_group)
        for g in range(head.num_groups):  # ML-Decoder's GroupFC, written as its loop
            out[:, g, :] = hidden[:, g, :] @ head.group_weight[g]
        expected = out.flatten(1)[:, :23] + head.group_bias
    torch.testing.assert_close(logits, expected)


def test_each_label_gets_its_groups_attention() -> None:
    head = MLDecoderHead(16, 10, num_groups=4, embed_dim=32, ffn_dim=64, num_heads=4).eval()
    with torch.no_grad():
        attention = head(torch.randn(2, 16, 3, 5)).attention
    assert attention.shape == (2, 10, 3, 5)
    # R = 3: labels 0-2 share group 0, 3-5 group 1, ...
    torch.testing.assert_close(attention[:, 0], attention[:, 2])
    torch.testing.assert_close(attention[:, 3], attention[:, 5])
    assert not torch.allclose(attention[:, 0], attention[:, 3])


def test_cosine_logits_are_bounded_by_the_scale() -> None:
    head = MLDecoderHead(16, 12, embed_dim=32, ffn_dim=64, num_heads=4, cosine=True, scale=10.0).eval()
    with torch.no_grad():
        logits = head(torch.randn(4, 16, 2, 2)).logits
    assert logits.abs().max() <= 10.0 + 1e-4  # bias starts at 0


def test_scales_to_thousands_of_labels_within_memory() -> None:
    """5,000 labels: cost is in the group FC only (G stays 100); a forward+backward fits easily in memory."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    head = MLDecoderHead(64, 5000, embed_dim=128, ffn_dim=256, num_heads=4)
    assert head.num_groups == 100 and head.per_group == 50
    logits = head(torch.randn(8, 64, 7, 7)).logits
    assert logits.shape == (8, 5000)
    logits.sum().backward()
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 500, f"peak memory grew by {grown_mb:.0f} MB"
    params = sum(p.numel() for p in head.parameters())
    assert params < 1.5e6  # group FC 100*128*50 + bias; no per-label query or attention

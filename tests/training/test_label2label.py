"""Label2Label: the sentence comes from the AQN's own thresholded predictions, masking only in training."""

from __future__ import annotations

import pytest
import torch

from training.models.label2label import Label2LabelHead


@pytest.fixture
def head() -> Label2LabelHead:
    torch.manual_seed(0)
    return Label2LabelHead(in_channels=16, num_classes=6, hidden_dim=32, ffn_dim=64, mask_prob=0.3)


def test_outputs_and_aux_logits(head: Label2LabelHead) -> None:
    head.eval()
    with torch.no_grad():
        out = head(torch.randn(3, 16, 4, 5))
    assert out.logits.shape == (3, 6) and out.attention.shape == (3, 6, 4, 5)
    assert len(out.aux_logits) == 1 and out.aux_logits[0].shape == (3, 6)
    assert not torch.allclose(out.logits, out.aux_logits[0])


def test_sentence_uses_present_and_absent_words(head: Label2LabelHead) -> None:
    head.eval()
    initial = torch.tensor([[1.0, -1.0, 0.5, -0.1, 2.0, -3.0]])
    sentence = head._sentence(initial)
    for j, positive in enumerate([True, False, True, False, True, False]):
        word = head.words.weight[j] if positive else head.words.weight[6 + j]
        torch.testing.assert_close(sentence[0, j], word)


def test_masking_only_in_training_at_the_configured_rate(head: Label2LabelHead) -> None:
    initial = torch.randn(4000, 6)
    head.eval()
    assert not _masked(head, initial).any()
    head.train()
    rate = _masked(head, initial).float().mean().item()
    assert rate == pytest.approx(0.3, abs=0.02)


def _masked(head: Label2LabelHead, initial: torch.Tensor) -> torch.Tensor:
    sentence = head._sentence(initial)
    return (sentence == head.mask_words.weight.unsqueeze(0)).all(dim=-1)


def test_eval_is_deterministic(head: Label2LabelHead) -> None:
    head.eval()
    features = torch.randn(2, 16, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(head(features).logits, head(features).logits)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="mask_prob"):
        Label2LabelHead(16, 4, mask_prob=1.0)
    with pytest.raises(ValueError, match="at least one layer"):
        Label2LabelHead(16, 4, label_layers=0)

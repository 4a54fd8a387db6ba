"""Label2Label (Li et al., ECCV 2022): an image-conditioned masked label language model over attribute "words".

Two stages, as the official Pedestrian_Attribute code:
1. Attribute query network (AQN): one learnable query per attribute, a self-attention encoder layer over the queries,
   then decoder layers (query self-attention kept, cross-attention to the image tokens with sine positions on the
   keys), pre-norm, GELU, a group-wise linear classifier and BatchNorm1d -> initial logits x1.
2. IC-MLM: the AQN's own thresholded predictions form a "sentence", one word per attribute (a "present" and an
   "absent" embedding each, so position needs no extra encoding). In training each word is replaced by its
   attribute's learnable mask vector with probability `mask_prob` (0.1). Decoder layers over the words (self-attention
   among them + cross-attention to the image) and a second classifier + BatchNorm1d give the refined logits x2.

Inference uses no masking; x2 is the prediction and x1 is returned as auxiliary logits so training sums both losses
(qratio = lratio = 1). The exported graph holds both stages. The per-attribute maps are the last IC-MLM layer's
cross-attention.
"""

from __future__ import annotations

import torch
from torch import nn

from training.models.base import ModelOutput
from training.models.layers import DecoderLayer, EncoderLayer, GroupWiseLinear, sine_position_encoding
from training.models.registry import register_head

__all__ = ["Label2LabelHead"]


def _decoder(dim: int, heads: int, ffn_dim: int, dropout: float, layers: int) -> nn.ModuleList:
    return nn.ModuleList(
        DecoderLayer(dim, heads, ffn_dim, dropout, self_attention=True, pre_norm=True, activation="gelu")
        for _ in range(layers)
    )


@register_head("label2label")
class Label2LabelHead(nn.Module):
    """Attribute query network + image-conditioned masked label language model.

    Args:
        in_channels: backbone channels.
        num_classes: number of attributes M.
        hidden_dim: transformer width; defaults to `in_channels` (2048 on ResNet-50 in the reference).
        num_heads: attention heads (4).
        ffn_dim: FFN width; defaults to hidden_dim (2048 in the reference).
        dropout: dropout of the AQN and before both classifiers (0.1).
        label_dropout: dropout inside the IC-MLM decoder (0.3 on PA-100K, 0.1 on LFWA).
        query_layers: AQN decoder layers (`decN`, 2 on PA-100K).
        label_layers: IC-MLM decoder layers (`decNL`, 2).
        mask_prob: probability of masking each word in training (`labeldp`, 0.1).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        hidden_dim: int | None = None,
        num_heads: int = 4,
        ffn_dim: int | None = None,
        dropout: float = 0.1,
        label_dropout: float = 0.3,
        query_layers: int = 2,
        label_layers: int = 2,
        mask_prob: float = 0.1,
    ) -> None:
        super().__init__()
        if not 0.0 <= mask_prob < 1.0:
            raise ValueError(f"mask_prob must be in [0, 1), got {mask_prob}")
        if query_layers < 1 or label_layers < 1:
            raise ValueError(f"need at least one layer per stage, got {query_layers} and {label_layers}")
        hidden_dim = hidden_dim or in_channels
        ffn_dim = ffn_dim or hidden_dim
        self.init_kwargs = {
            "hidden_dim": hidden_dim, "num_heads": num_heads, "ffn_dim": ffn_dim, "dropout": dropout,
            "label_dropout": label_dropout, "query_layers": query_layers, "label_layers": label_layers,
            "mask_prob": mask_prob,
        }
        self.num_classes = num_classes
        self.mask_prob = mask_prob
        self.input_proj: nn.Module = (
            nn.Identity() if hidden_dim == in_channels else nn.Conv2d(in_channels, hidden_dim, kernel_size=1)
        )
        # stage 1: attribute query network
        self.queries = nn.Embedding(num_classes, hidden_dim)
        self.query_encoder = EncoderLayer(hidden_dim, num_heads, ffn_dim, dropout, pre_norm=True, activation="gelu")
        self.query_encoder_norm = nn.LayerNorm(hidden_dim)
        self.query_decoder = _decoder(hidden_dim, num_heads, ffn_dim, dropout, query_layers)
        self.query_norm = nn.LayerNorm(hidden_dim)
        self.query_classifier = GroupWiseLinear(num_classes, hidden_dim)
        self.query_bn = nn.BatchNorm1d(num_classes)
        # stage 2: image-conditioned masked label language model
        self.words = nn.Embedding(2 * num_classes, hidden_dim)  # rows 0..M-1 "present", M..2M-1 "absent"
        self.mask_words = nn.Embedding(num_classes, hidden_dim)
        self.label_decoder = _decoder(hidden_dim, num_heads, ffn_dim, label_dropout, label_layers)
        self.label_norm = nn.LayerNorm(hidden_dim)
        self.label_classifier = GroupWiseLinear(num_classes, hidden_dim)
        self.label_bn = nn.BatchNorm1d(num_classes)
        self.feature_dropout = nn.Dropout(dropout)

    def _initial_logits(self, memory: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        batch = memory.shape[0]
        queries = self.query_encoder_norm(self.query_encoder(self.queries.weight.unsqueeze(0).expand(batch, -1, -1)))
        for layer in self.query_decoder:
            queries, _ = layer(queries, memory, pos, None)
        return self.query_bn(self.query_classifier(self.feature_dropout(self.query_norm(queries))))

    def _sentence(self, initial_logits: torch.Tensor) -> torch.Tensor:
        """`[B, M, d]`: attribute j's "present" word where x1_j > 0, else its "absent" word; masked in training."""
        present = (initial_logits > 0).unsqueeze(-1)  # hard threshold, no gradient, as the reference
        sentence = torch.where(present, self.words.weight[: self.num_classes], self.words.weight[self.num_classes :])
        if self.training and self.mask_prob > 0:
            masked = torch.rand(initial_logits.shape, device=initial_logits.device) < self.mask_prob
            sentence = torch.where(masked.unsqueeze(-1), self.mask_words.weight.unsqueeze(0), sentence)
        return sentence

    def forward(self, features: torch.Tensor) -> ModelOutput:
        x = self.input_proj(features)
        batch, dim, height, width = x.shape
        memory = x.flatten(2).transpose(1, 2)  # [B, HW, d]
        pos = sine_position_encoding(height, width, dim, device=x.device).to(x.dtype).unsqueeze(0)
        initial = self._initial_logits(memory, pos)  # [B, M]
        words = self._sentence(initial)
        weights = torch.empty(0)
        for layer in self.label_decoder:  # at least one layer (checked in __init__)
            words, weights = layer(words, memory, pos, None)
        refined = self.label_bn(self.label_classifier(self.feature_dropout(self.label_norm(words))))
        return ModelOutput(refined, weights.reshape(batch, -1, height, width), aux_logits=(initial,))

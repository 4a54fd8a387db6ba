"""ML-Decoder (Ridnik et al., arXiv 2111.12933): a fixed number of group queries, so cost does not grow with labels.

Follows the official code: feature tokens projected to `embed_dim` with a ReLU, no positional encoding, G = min(100, K)
frozen random queries, one decoder layer whose query self-attention is replaced by `tgt + dropout(tgt)` and a
LayerNorm, 8 heads, FFN 2048, and a group fully-connected layer in which group g produces R = ceil(K / G) logits.
The group FC is one batched einsum instead of the reference's Python loop over groups (ML_Decoder issue #83).

`cosine=True` is the metric-learning variant of Prokofiev & Sovrasov ("GroupASL"): the query outputs and the group
FC weights are L2-normalised and the logits are `scale * (cos(theta) + bias)`, the bias starting at 0, for the
Asymmetric Angular Margin loss (which reads `logits / scale` as the cosine). Each label's attention map is its
group's cross-attention map.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from training.models.base import ModelOutput
from training.models.layers import FeedForward, MultiHeadAttention
from training.models.registry import register_head

__all__ = ["MLDecoderHead"]

_MAX_GROUPS = 100


class _GroupDecoderLayer(nn.Module):
    """ML-Decoder's decoder layer: no query self-attention, cross-attention over tokens, FFN; post-norm."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn = MultiHeadAttention(dim, heads, dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_dim, dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tgt = self.norm1(tgt + self.dropout1(tgt))
        attended, weights = self.cross_attn(tgt, memory, memory)
        tgt = self.norm2(tgt + self.dropout2(attended))
        return self.norm3(tgt + self.dropout3(self.ffn(tgt))), weights


@register_head("mldecoder")
class MLDecoderHead(nn.Module):
    """Group-query transformer decoder head.

    Args:
        in_channels: backbone channels.
        num_classes: number of labels K.
        num_groups: queries G; -1 means min(100, K).
        embed_dim: decoder width (768 in the reference).
        num_heads: attention heads (8).
        ffn_dim: FFN width (2048).
        dropout: dropout in the decoder layer (0.1).
        token_activation: `relu` (ML-Decoder) or `leaky_relu` (deep-object-reid's port, slope 0.2).
        learnable_queries: train the queries (the reference freezes them).
        cosine: cosine logits for metric learning (normalised outputs and weights).
        scale: multiplies the cosines when `cosine` (the AAM loss's s; 23 in the released ML-Decoder configs).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        num_groups: int = -1,
        embed_dim: int = 768,
        num_heads: int = 8,
        ffn_dim: int = 2048,
        dropout: float = 0.1,
        token_activation: str = "relu",
        learnable_queries: bool = False,
        cosine: bool = False,
        scale: float = 23.0,
    ) -> None:
        super().__init__()
        groups = min(_MAX_GROUPS, num_classes) if num_groups < 0 else min(num_groups, num_classes)
        if groups < 1:
            raise ValueError(f"num_groups must be -1 or >= 1, got {num_groups}")
        if token_activation not in ("relu", "leaky_relu"):
            raise ValueError(f"token_activation must be 'relu' or 'leaky_relu', got {token_activation!r}")
        self.init_kwargs = {
            "num_groups": num_groups, "embed_dim": embed_dim, "num_heads": num_heads, "ffn_dim": ffn_dim,
            "dropout": dropout, "token_activation": token_activation, "learnable_queries": learnable_queries,
            "cosine": cosine, "scale": scale,
        }
        self.num_classes = num_classes
        self.num_groups = groups
        self.per_group = math.ceil(num_classes / groups)  # R logits per group
        self.cosine = cosine
        self.scale = scale
        self.logit_scale = scale if cosine else None  # read by the AAM loss: cos = logits / logit_scale
        self.token_proj = nn.Linear(in_channels, embed_dim)
        self.token_activation = token_activation
        self.queries = nn.Parameter(torch.randn(groups, embed_dim), requires_grad=learnable_queries)
        self.decoder = _GroupDecoderLayer(embed_dim, num_heads, ffn_dim, dropout)
        self.group_weight = nn.Parameter(torch.empty(groups, embed_dim, self.per_group))  # [G, D, R]
        nn.init.xavier_normal_(self.group_weight)
        self.group_bias = nn.Parameter(torch.zeros(num_classes))
        # label k is row k of the flattened [G, R] output, so it belongs to group k // R
        self.register_buffer("label_group", torch.arange(num_classes) // self.per_group, persistent=False)

    def _tokens(self, features: torch.Tensor) -> torch.Tensor:
        tokens = self.token_proj(features.flatten(2).transpose(1, 2))  # [B, HW, D]
        if self.token_activation == "relu":
            return F.relu(tokens)
        return F.leaky_relu(tokens, 0.2)

    def forward(self, features: torch.Tensor) -> ModelOutput:
        batch, _, height, width = features.shape
        memory = self._tokens(features)
        queries = self.queries.unsqueeze(0).expand(batch, -1, -1)  # [B, G, D]
        hidden, weights = self.decoder(queries, memory)  # [B, G, D], [B, G, HW]
        weight = self.group_weight
        if self.cosine:
            hidden = F.normalize(hidden, dim=-1)
            weight = F.normalize(weight, dim=1)
        grouped = torch.einsum("bgd,gdr->bgr", hidden, weight)  # [B, G, R]
        logits = grouped.flatten(1)[:, : self.num_classes] + self.group_bias
        if self.cosine:
            logits = logits * self.scale
        attention = weights.index_select(1, self.label_group).reshape(batch, self.num_classes, height, width)
        return ModelOutput(logits, attention)

"""Query2Label (Liu et al., arXiv 2107.10834): one learnable query per label cross-attends over the feature map.

Follows the official code's defaults where it differs from the paper: no input projection unless asked (so the
hidden size is the backbone's channel count), one post-norm encoder layer, two decoder layers whose query
self-attention is removed, content queries starting at zero with the label embeddings added as query positions, a
final LayerNorm and a group-wise linear classifier. The sine positional encoding is computed for the actual
feature size, so the model runs at any input resolution (the reference fixes one).

The attention map a label returns (`attention_readout`): its raw cross-attention localises poorly here (the
pointing game of one decoder layer's head-averaged softmax is 40-50 % on the pretrained preset, below the linear
head's CAM): the encoder's self-attention has mixed every token with the others, and a query attends to tokens
whatever they carry. The default "relevance" readout weighs each head's attention by what the attended token adds
to this label's logit (its value through the output projection, dotted with the label's classifier row), sums the
decoder layers, and rolls the result back through the encoder's self-attention (half identity for the residual,
Abnar & Zuidema's attention rollout), then keeps the positive part as a distribution (bench/attention_study.py
measured the options).
"""

from __future__ import annotations

import torch
from torch import nn

from training.models.base import ModelOutput
from training.models.layers import DecoderLayer, EncoderLayer, GroupWiseLinear, sine_position_encoding
from training.models.registry import register_head

__all__ = ["ATTENTION_READOUTS", "Query2LabelHead"]

ATTENTION_READOUTS = ("relevance", "softmax")


@register_head("query2label")
class Query2LabelHead(nn.Module):
    """Transformer decoder with one query per label over the backbone's feature map.

    Args:
        in_channels: backbone channels.
        num_classes: number of labels (one query each).
        hidden_dim: transformer width; defaults to `in_channels`, which the reference requires without projection.
        keep_input_proj: add a 1x1 convolution from `in_channels` to `hidden_dim` (the reference removes it).
        enc_layers: transformer encoder layers over the feature tokens (0 disables the encoder).
        dec_layers: decoder layers.
        num_heads: attention heads.
        ffn_dim: FFN width; defaults to 4 * hidden_dim (2048 -> 8192 as in the reference).
        dropout: dropout on attention weights and residual branches.
        pre_norm: pre-LayerNorm layers instead of DETR's post-norm.
        keep_first_self_attn: keep query self-attention in the first decoder layer.
        keep_other_self_attn: keep query self-attention in the other decoder layers.
        attention_layer: with `attention_readout="softmax"`, which decoder layer's cross-attention to return as the
            per-label map (-1 = last).
        attention_readout: the per-label map returned: "relevance" (attention weighted by each token's contribution
            to the label's logit, all decoder layers, rolled back through the encoder) or "softmax" (one decoder
            layer's cross-attention, mean of heads).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        hidden_dim: int | None = None,
        keep_input_proj: bool = False,
        enc_layers: int = 1,
        dec_layers: int = 2,
        num_heads: int = 4,
        ffn_dim: int | None = None,
        dropout: float = 0.1,
        pre_norm: bool = False,
        keep_first_self_attn: bool = False,
        keep_other_self_attn: bool = False,
        attention_layer: int = -1,
        attention_readout: str = "relevance",
    ) -> None:
        super().__init__()
        hidden_dim = hidden_dim or in_channels
        if hidden_dim != in_channels and not keep_input_proj:
            raise ValueError(
                f"hidden_dim {hidden_dim} differs from the backbone's {in_channels} channels: set keep_input_proj=True "
                f"to project, or hidden_dim={in_channels}"
            )
        if dec_layers < 1:
            raise ValueError("query2label needs at least one decoder layer")
        if not -dec_layers <= attention_layer < dec_layers:
            raise ValueError(f"attention_layer {attention_layer} is outside the {dec_layers} decoder layers")
        if attention_readout not in ATTENTION_READOUTS:
            raise ValueError(f"attention_readout {attention_readout!r} is not one of {ATTENTION_READOUTS}")
        ffn_dim = ffn_dim or 4 * hidden_dim
        self.init_kwargs = {
            "hidden_dim": hidden_dim, "keep_input_proj": keep_input_proj, "enc_layers": enc_layers,
            "dec_layers": dec_layers, "num_heads": num_heads, "ffn_dim": ffn_dim, "dropout": dropout,
            "pre_norm": pre_norm, "keep_first_self_attn": keep_first_self_attn,
            "keep_other_self_attn": keep_other_self_attn, "attention_layer": attention_layer,
            "attention_readout": attention_readout,
        }
        self.hidden_dim = hidden_dim
        self.attention_layer = attention_layer % dec_layers
        self.attention_readout = attention_readout
        self.input_proj: nn.Module = (
            nn.Conv2d(in_channels, hidden_dim, kernel_size=1) if keep_input_proj else nn.Identity()
        )
        self.encoder = nn.ModuleList(
            EncoderLayer(hidden_dim, num_heads, ffn_dim, dropout, pre_norm) for _ in range(enc_layers)
        )
        self.encoder_norm = nn.LayerNorm(hidden_dim) if pre_norm and enc_layers else nn.Identity()
        self.decoder = nn.ModuleList(
            DecoderLayer(
                hidden_dim, num_heads, ffn_dim, dropout,
                self_attention=keep_first_self_attn if i == 0 else keep_other_self_attn,
                pre_norm=pre_norm,
            )
            for i in range(dec_layers)
        )
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        for module in (self.encoder, self.decoder):
            for param in module.parameters():
                if param.dim() > 1:
                    nn.init.xavier_uniform_(param)
        self.query_embed = nn.Embedding(num_classes, hidden_dim)
        self.fc = GroupWiseLinear(num_classes, hidden_dim)

    def forward(self, features: torch.Tensor) -> ModelOutput:
        x = self.input_proj(features)  # [B, d, h, w]
        batch, dim, height, width = x.shape
        memory = x.flatten(2).transpose(1, 2)  # [B, hw, d]
        pos = sine_position_encoding(height, width, dim, device=x.device).to(x.dtype).unsqueeze(0)  # [1, hw, d]
        mixing = []  # each encoder layer's self-attention [B, hw, hw]
        for layer in self.encoder:
            memory, weights = layer.forward_with_weights(memory, pos)
            mixing.append(weights)
        memory = self.encoder_norm(memory)
        query_pos = self.query_embed.weight.unsqueeze(0).expand(batch, -1, -1)  # [B, K, d]
        tgt = torch.zeros_like(query_pos)
        cross = []  # each decoder layer's (weights [B, heads, K, hw], values [B, heads, hw, hd], out_proj)
        for layer in self.decoder:
            tgt, weights, values = layer.forward_heads(tgt, memory, pos, query_pos)
            cross.append((weights, values, layer.cross_attn.out_proj.weight))
        logits = self.fc(self.decoder_norm(tgt))  # [B, K]
        if self.attention_readout == "softmax":
            maps = cross[self.attention_layer][0].mean(dim=1)  # [B, K, hw]
        else:
            maps = self._relevance(cross, mixing)
        return ModelOutput(logits, maps.reshape(batch, -1, height, width))

    def _relevance(self, cross: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                   mixing: list[torch.Tensor]) -> torch.Tensor:
        """Per-label relevance of each input token `[B, K, hw]`, a distribution over tokens like the softmax."""
        classifier = self.fc.weight  # [K, d]
        relevance = None
        for weights, values, out_proj in cross:
            heads, head_dim = values.shape[1], values.shape[-1]
            # what a head's value adds to label k's logit direction: out_proj's columns of that head, dotted with w_k
            directions = (classifier @ out_proj).reshape(-1, heads, head_dim)  # [K, heads, hd]
            contribution = torch.einsum("khc,bhpc->bhkp", directions, values)  # [B, heads, K, hw]
            layer_relevance = (weights * contribution).sum(dim=1)  # [B, K, hw]
            relevance = layer_relevance if relevance is None else relevance + layer_relevance
        assert relevance is not None  # at least one decoder layer (checked in __init__)
        for weights in reversed(mixing):  # memory tokens -> the input tokens they were mixed from
            relevance = 0.5 * relevance + 0.5 * relevance @ weights
        relevance = relevance.clamp(min=0)
        total = relevance.sum(dim=-1, keepdim=True)
        # a label no token speaks for (all relevance <= 0) falls back to its plain last-layer attention
        fallback = cross[-1][0].mean(dim=1)
        return torch.where(total > 0, relevance / total.clamp(min=1e-12), fallback)

"""Query2Label (Liu et al., arXiv 2107.10834): one learnable query per label cross-attends over the feature map.

Follows the official code's defaults where it differs from the paper: no input projection unless asked (so the
hidden size is the backbone's channel count), one post-norm encoder layer, two decoder layers whose query
self-attention is removed, content queries starting at zero with the label embeddings added as query positions, a
final LayerNorm and a group-wise linear classifier. The sine positional encoding is computed for the actual
feature size, so the model runs at any input resolution (the reference fixes one).

The attention map a label returns (`attention_readout`): its raw cross-attention localises poorly (the pointing
game of one decoder layer's head-averaged softmax is 40-50 % on the pretrained preset, below the linear head's CAM):
the encoder's self-attention has mixed every token with the others, and a query attends to tokens whatever they
carry. The default "relevance" readout follows each label's logit back to the input tokens: each decoder head's
attention times what the attended memory token adds along the label's logit direction (classifier row through the
head's output and value projections), with every memory token decomposed, through the last encoder layer's
LayerNorms and self-attention, into the part its own input token brought and the parts each head carried from the
others (a value-aware decomposition in the spirit of Kobayashi et al. 2020 and DecompX; the FFN's own change and the
biases are left out). Earlier encoder layers, if any, are rolled back by their attention's share of each token. The
positive part is returned as a distribution. "rollout" is the earlier readout (the same attention x contribution on
memory tokens, rolled back through head-averaged self-attention at half identity), "softmax" one decoder layer's
plain cross-attention; bench/attention_study.py measures them all.
"""

from __future__ import annotations

import torch
from torch import nn

from training.models.base import ModelOutput
from training.models.layers import DecoderLayer, EncoderLayer, EncoderTrace, GroupWiseLinear, sine_position_encoding
from training.models.registry import register_head

__all__ = ["ATTENTION_READOUTS", "Query2LabelHead"]

ATTENTION_READOUTS = ("relevance", "rollout", "softmax")


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
        attention_readout: the per-label map returned: "relevance" (each input token's part of the label's logit
            through the decoder's attention and the encoder's mixing, all decoder layers), "rollout" (the decoder's
            attention x contribution on memory tokens, rolled back through the encoder at half identity) or
            "softmax" (one decoder layer's cross-attention, mean of heads).
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
        traces: list[EncoderTrace] = []  # what each encoder layer mixed
        for layer in self.encoder:
            memory, trace = layer.forward_traced(memory, pos)
            traces.append(trace)
        encoded = memory
        memory = self.encoder_norm(memory)
        query_pos = self.query_embed.weight.unsqueeze(0).expand(batch, -1, -1)  # [B, K, d]
        tgt = torch.zeros_like(query_pos)
        cross = []  # each decoder layer's (weights [B, heads, K, hw], values [B, heads, hw, hd])
        for layer in self.decoder:
            tgt, weights, values = layer.forward_heads(tgt, memory, pos, query_pos)
            cross.append((weights, values))
        logits = self.fc(self.decoder_norm(tgt))  # [B, K]
        if self.attention_readout == "softmax":
            maps = cross[self.attention_layer][0].mean(dim=1)  # [B, K, hw]
        elif self.attention_readout == "rollout":
            maps = self._as_distribution(self._rollout(cross, traces), cross)
        else:
            maps = self._as_distribution(self._relevance(cross, traces, encoded), cross)
        return ModelOutput(logits, maps.reshape(batch, -1, height, width))

    def _label_directions(self, layer: DecoderLayer) -> torch.Tensor:
        """`[K, heads, hd]`: what one unit of each head's value adds to each label's logit (classifier row through
        the head's columns of the output projection; the decoder's LayerNorms and FFNs are left out)."""
        heads, head_dim = layer.cross_attn.heads, layer.cross_attn.head_dim
        return (self.fc.weight @ layer.cross_attn.out_proj.weight).reshape(-1, heads, head_dim)

    def _contributions(self, cross: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """`[B, K, hw]`: per memory token, attention x what its value adds to the label's logit, summed over heads
        and decoder layers."""
        total = torch.zeros((), device=cross[0][0].device)
        for layer, (weights, values) in zip(self.decoder, cross, strict=True):
            contribution = torch.einsum("khc,bhpc->bhkp", self._label_directions(layer), values)  # [B, heads, K, hw]
            total = total + (weights * contribution).sum(dim=1)
        return total

    def _rollout(self, cross: list[tuple[torch.Tensor, torch.Tensor]], traces: list[EncoderTrace]) -> torch.Tensor:
        relevance = self._contributions(cross)
        for trace in reversed(traces):  # memory tokens -> the input tokens they were mixed from
            relevance = 0.5 * relevance + 0.5 * relevance @ trace.weights.mean(dim=1)
        return relevance

    def _relevance(self, cross: list[tuple[torch.Tensor, torch.Tensor]], traces: list[EncoderTrace],
                   encoded: torch.Tensor) -> torch.Tensor:
        """`[B, K, hw]`: each input token's part of each label's logit (see the module docstring)."""
        if not traces:  # no encoder: the memory tokens are the input tokens
            return self._contributions(cross)
        last = traces[-1]
        scale, gains = last.scale, last.gains
        if isinstance(self.encoder_norm, nn.LayerNorm):  # pre-norm encoders end with one more LayerNorm
            scale = scale * torch.rsqrt(encoded.var(dim=-1, unbiased=False) + self.encoder_norm.eps)
            gains = (self.encoder_norm.weight, *gains)
        heads, head_dim = last.values.shape[1], last.values.shape[-1]
        encoder_out_proj = last.out_proj.reshape(-1, heads, head_dim)  # [d, g, hd]
        relevance = torch.zeros((), device=encoded.device)
        for layer, (weights, _) in zip(self.decoder, cross, strict=True):
            value_proj = layer.cross_attn.v_proj.weight  # [heads * hd, d]
            cross_heads = weights.shape[1]
            # the label's logit direction on the memory tokens each decoder head reads, back through the LayerNorms
            direction = torch.einsum("khc,hcd->khd", self._label_directions(layer),
                                     value_proj.reshape(cross_heads, -1, value_proj.shape[-1]))  # [K, heads, d]
            for gain in gains:
                direction = direction * gain
                direction = direction - direction.mean(dim=-1, keepdim=True)
            read = weights * scale[:, None, None, :]  # [B, heads, K, hw]: attention, per memory token's scale
            own = torch.einsum("khd,bid->bhki", direction, last.inputs)  # the memory token's own input token
            relevance = relevance + (read * own).sum(dim=1)
            # what encoder head g carried from token j into memory token i, along the direction: [B, heads, g, K, j]
            carried = torch.einsum("khgc,bgjc->bhgkj", torch.einsum("khd,dgc->khgc", direction, encoder_out_proj),
                                   last.values)
            mixed = read.unsqueeze(2) @ last.weights.unsqueeze(1)  # [B, heads, g, K, j]: sum_i read[k, i] A_g[i, j]
            relevance = relevance + (mixed * carried).sum(dim=(1, 2))
        for trace in reversed(traces[:-1]):  # earlier layers: by their attention's share of each token
            share = trace.share.unsqueeze(1)  # [B, 1, hw]
            relevance = relevance * (1 - share) + (relevance * share) @ trace.weights.mean(dim=1)
        return relevance

    @staticmethod
    def _as_distribution(relevance: torch.Tensor, cross: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """The positive part of `relevance` `[B, K, hw]` as a distribution over tokens, like the softmax; a label no
        token speaks for (all relevance <= 0) falls back to its plain last-layer attention."""
        relevance = relevance.clamp(min=0)
        total = relevance.sum(dim=-1, keepdim=True)
        fallback = cross[-1][0].mean(dim=1)
        return torch.where(total > 0, relevance / total.clamp(min=1e-12), fallback)

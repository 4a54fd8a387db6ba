"""Transformer pieces shared by the attention heads.

Written out (rather than nn.MultiheadAttention) so that the cross-attention weights come back from any layer,
averaged over heads, in a form that exports to ONNX as plain MatMul/Softmax.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

__all__ = ["DecoderLayer", "EncoderLayer", "EncoderTrace", "FeedForward", "GroupWiseLinear", "MultiHeadAttention",
           "sine_position_encoding"]


def sine_position_encoding(
    height: int, width: int, dim: int, temperature: float = 10000.0, device: torch.device | None = None
) -> torch.Tensor:
    """DETR's normalised 2-D sine encoding for an `height x width` grid, `[height * width, dim]`.

    Half the channels encode y and half x; positions are normalised to (0, 2*pi] so the encoding is defined for any
    feature size (the reference precomputes it for one image size only).
    """
    if dim % 4:
        raise ValueError(f"sine position encoding needs dim divisible by 4, got {dim}")
    per_axis = dim // 2
    eps = 1e-6
    y = torch.arange(1, height + 1, dtype=torch.float32, device=device) / (height + eps) * 2 * math.pi
    x = torch.arange(1, width + 1, dtype=torch.float32, device=device) / (width + eps) * 2 * math.pi
    index = torch.arange(per_axis, dtype=torch.float32, device=device)
    freqs = temperature ** (2 * torch.div(index, 2, rounding_mode="floor") / per_axis)
    pos_y = y[:, None] / freqs  # [h, per_axis]
    pos_x = x[:, None] / freqs  # [w, per_axis]
    pos_y = torch.stack((pos_y[:, 0::2].sin(), pos_y[:, 1::2].cos()), dim=2).flatten(1)
    pos_x = torch.stack((pos_x[:, 0::2].sin(), pos_x[:, 1::2].cos()), dim=2).flatten(1)
    grid = torch.cat(
        (pos_y[:, None, :].expand(height, width, per_axis), pos_x[None, :, :].expand(height, width, per_axis)), dim=2
    )
    return grid.reshape(height * width, dim)


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention over `heads` heads that also returns the head-averaged weights.

    Inputs are batch-first: query `[B, Lq, d]`, key `[B, Lk, d]`, value `[B, Lk, d]`.
    Returns the output `[B, Lq, d]` and the weights `[B, Lq, Lk]` (rows sum to 1).
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.head_dim = dim // heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.reshape(batch, length, self.heads, self.head_dim).transpose(1, 2)  # [B, h, L, hd]

    def attend(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Output `[B, Lq, d]`, each head's weights `[B, h, Lq, Lk]` and values `[B, h, Lk, hd]` (for readouts that
        weigh attention by what it carries, e.g. Query2Label's relevance maps)."""
        q = self._split(self.q_proj(query)) * self.head_dim**-0.5
        k = self._split(self.k_proj(key))
        v = self._split(self.v_proj(value))
        weights = torch.softmax(q @ k.transpose(-2, -1), dim=-1)  # [B, h, Lq, Lk]
        out = self.dropout(weights) @ v  # [B, h, Lq, hd]
        out = out.transpose(1, 2).flatten(2)  # [B, Lq, d]
        return self.out_proj(out), weights, v

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out, weights, _ = self.attend(query, key, value)
        return out, weights.mean(dim=1)


class FeedForward(nn.Module):
    """Linear -> activation -> dropout -> Linear, the transformer FFN."""

    def __init__(self, dim: int, hidden: int, dropout: float, activation: str = "relu") -> None:
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden)
        self.activation = nn.ReLU() if activation == "relu" else nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


def _with_pos(x: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
    return x if pos is None else x + pos


class EncoderLayer(nn.Module):
    """DETR encoder layer: self-attention with q = k = src + pos and v = src, then FFN; post-norm by default."""

    def __init__(
        self, dim: int, heads: int, ffn_dim: int, dropout: float, pre_norm: bool = False, activation: str = "relu"
    ) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(dim, heads, dropout)
        self.ffn = FeedForward(dim, ffn_dim, dropout, activation)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def forward(self, src: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_traced(src, pos)[0]

    def forward_traced(self, src: torch.Tensor, pos: torch.Tensor | None = None) -> tuple[torch.Tensor, EncoderTrace]:
        """The updated tokens and what the layer mixed into them (for readouts that follow a label's evidence from
        these tokens back to the layer's input tokens)."""
        if self.pre_norm:
            normed = self.norm1(src)
            keyed = _with_pos(normed, pos)
            attended, weights, values = self.self_attn.attend(keyed, keyed, normed)
            summed = src + self.dropout1(attended)
            out = summed + self.dropout2(self.ffn(self.norm2(summed)))
            return out, EncoderTrace(src, weights, values, self.self_attn.out_proj.weight, _mixed_share(src, attended),
                                     torch.ones_like(src[..., 0]), ())
        keyed = _with_pos(src, pos)
        attended, weights, values = self.self_attn.attend(keyed, keyed, src)
        summed = src + self.dropout1(attended)
        normed = self.norm1(summed)
        residual = normed + self.dropout2(self.ffn(normed))
        scale = _inverse_std(summed, self.norm1) * _inverse_std(residual, self.norm2)
        return self.norm2(residual), EncoderTrace(src, weights, values, self.self_attn.out_proj.weight,
                                                  _mixed_share(src, attended), scale,
                                                  (self.norm2.weight, self.norm1.weight))


class EncoderTrace(NamedTuple):
    """One encoder layer's mixing, linearised: output token i is about `scale_i * gains (x) (inputs_i + sum_h sum_j
    weights[h, i, j] * out_proj_h(values[h, j]))`, the FFN's own change to the token and the biases left out.

    Attributes:
        inputs: the layer's input tokens `[B, L, d]` (the residual path).
        weights: each head's self-attention `[B, h, L, L]`.
        values: each head's values `[B, h, L, hd]`, before the output projection.
        out_proj: the attention's output projection weight `[d, h * hd]`.
        share: the attention's part of each output token, |attended| / (|attended| + |input|) `[B, L]`.
        scale: 1 / the standard deviations the LayerNorms after the attention divided each token by `[B, L]`.
        gains: those LayerNorms' gains, the outermost first (each also centres the token).
    """

    inputs: torch.Tensor
    weights: torch.Tensor
    values: torch.Tensor
    out_proj: torch.Tensor
    share: torch.Tensor
    scale: torch.Tensor
    gains: tuple[torch.Tensor, ...]


def _inverse_std(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """1 / the standard deviation `norm` divides each token of `x` by `[B, L]`."""
    return torch.rsqrt(x.var(dim=-1, unbiased=False) + norm.eps)


def _mixed_share(inputs: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
    mixed = attended.norm(dim=-1)
    return mixed / (mixed + inputs.norm(dim=-1)).clamp(min=1e-12)


class DecoderLayer(nn.Module):
    """DETR decoder layer with optional query self-attention (Query2Label removes it by default).

    Cross-attention uses q = tgt + query_pos, k = memory + pos, v = memory, and returns its weights.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        ffn_dim: int,
        dropout: float,
        self_attention: bool,
        pre_norm: bool = False,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(dim, heads, dropout) if self_attention else None
        self.norm1 = nn.LayerNorm(dim) if self_attention else None
        self.dropout1 = nn.Dropout(dropout)
        self.cross_attn = MultiHeadAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout2 = nn.Dropout(dropout)
        self.ffn = FeedForward(dim, ffn_dim, dropout, activation)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout3 = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def forward(
        self, tgt: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor | None, query_pos: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the updated queries `[B, K, d]` and the cross-attention weights `[B, K, HW]` (mean of heads)."""
        tgt, weights, _ = self.forward_heads(tgt, memory, pos, query_pos)
        return tgt, weights.mean(dim=1)

    def forward_heads(
        self, tgt: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor | None, query_pos: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Like `forward`, with each head's cross-attention weights `[B, h, K, HW]` and values `[B, h, HW, hd]`."""
        if self.pre_norm:
            return self._forward_pre(tgt, memory, pos, query_pos)
        if self.self_attn is not None and self.norm1 is not None:
            q = _with_pos(tgt, query_pos)
            tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, q, tgt)[0]))
        attended, weights, values = self.cross_attn.attend(_with_pos(tgt, query_pos), _with_pos(memory, pos), memory)
        tgt = self.norm2(tgt + self.dropout2(attended))
        tgt = self.norm3(tgt + self.dropout3(self.ffn(tgt)))
        return tgt, weights, values

    def _forward_pre(
        self, tgt: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor | None, query_pos: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.self_attn is not None and self.norm1 is not None:
            normed = self.norm1(tgt)
            keyed = _with_pos(normed, query_pos)
            tgt = tgt + self.dropout1(self.self_attn(keyed, keyed, normed)[0])
        attended, weights, values = self.cross_attn.attend(_with_pos(self.norm2(tgt), query_pos),
                                                           _with_pos(memory, pos), memory)
        tgt = tgt + self.dropout2(attended)
        tgt = tgt + self.dropout3(self.ffn(self.norm3(tgt)))
        return tgt, weights, values


class GroupWiseLinear(nn.Module):
    """One linear classifier per label over its own query: logit_k = <W_k, h_k> + b_k."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(dim)
        self.weight = nn.Parameter(torch.empty(num_classes, dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_classes).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`[B, K, d]` -> `[B, K]`."""
        return (x * self.weight).sum(-1) + self.bias

"""Graph branch head ("modified ML-GCN" of Prokofiev & Sovrasov, after Chen et al., CVPR 2019).

Two graph-convolution layers over per-label embeddings, propagated along the label co-occurrence graph of the
training set, give one vector per label; max-pooled over labels and squashed by a sigmoid it becomes a channel
attention that rescales the backbone feature map, which is then average-pooled and classified by a cosine
classifier (normalised features and class proxies, logits `scale * cos`) for the Asymmetric Angular Margin loss.

The graph part does not depend on the image, so in eval mode its channel attention is computed once and cached;
the exported ONNX graph therefore holds it as a constant and costs nothing at inference.

Adjacency as in ML-GCN: A_ij = P(label j | label i) from training co-occurrence counts, binarised at `threshold`
(0.4), neighbours re-weighted so they share `reweight` (0.25) of the mass, plus identity, then D^-1/2 A D^-1/2.
Label embeddings are learnable vectors (the reference starts from 300-d GloVe vectors, which cannot be downloaded
here; its word matrix is a trainable parameter too). The per-label maps are class activation maps of the cosine
classifier over the re-weighted features, softmax-normalised over positions.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from training.models.base import ModelOutput
from training.models.registry import register_head

__all__ = ["GCNHead", "label_adjacency"]


def label_adjacency(cooccurrence: np.ndarray, counts: np.ndarray, threshold: float = 0.4,
                    reweight: float = 0.25) -> np.ndarray:
    """ML-GCN's re-weighted, binarised conditional-probability adjacency (before symmetric normalisation).

    Args:
        cooccurrence: `[K, K]` number of training images holding both labels i and j (diagonal ignored).
        counts: `[K]` number of training images holding each label.
        threshold: P(j | i) below this is no edge.
        reweight: the share of a node's mass that goes to its neighbours.
    """
    conditional = cooccurrence / np.maximum(counts[:, None], 1)
    np.fill_diagonal(conditional, 0)
    binary = (conditional >= threshold).astype(np.float64)
    weighted = binary * reweight / (binary.sum(axis=0, keepdims=True) + 1e-6)
    return weighted + np.eye(len(counts))


class _GraphConvolution(nn.Module):
    """H' = A_hat H W (Kipf & Welling), no bias as in the reference."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        bound = 1.0 / out_features**0.5
        self.weight = nn.Parameter(torch.empty(in_features, out_features).uniform_(-bound, bound))

    def forward(self, nodes: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        return adjacency @ (nodes @ self.weight)


@register_head("gcn")
class GCNHead(nn.Module):
    """Label-graph channel attention + cosine classifier.

    Args:
        in_channels: backbone channels C.
        num_classes: number of labels K.
        embedding_dim: size of the label embeddings fed to the graph (300 in the reference).
        hidden_dim: first GCN layer's width; defaults to C (the reference's hidden_dim_scale 1).
        scale: logit scale s of the cosine classifier (17 in the released GCN configs).
        adjacency: `[K, K]` output of `label_adjacency`; training fills it from the data (checkpoints restore it).
    """

    uses_label_graph = True

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        embedding_dim: int = 300,
        hidden_dim: int | None = None,
        scale: float = 17.0,
        adjacency: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.init_kwargs = {"embedding_dim": embedding_dim, "hidden_dim": hidden_dim, "scale": scale}
        self.scale = scale
        self.logit_scale = scale  # read by the AAM loss: cos = logits / logit_scale
        matrix = np.eye(num_classes) if adjacency is None else np.asarray(adjacency, dtype=np.float64)
        if matrix.shape != (num_classes, num_classes):
            raise ValueError(f"adjacency must be [{num_classes}, {num_classes}], got {matrix.shape}")
        degree = matrix.sum(axis=1) ** -0.5
        normalised = (matrix * degree[None, :]).T * degree[None, :]  # (A D)^T D, as the reference's gen_adj
        self.register_buffer("adjacency", torch.as_tensor(normalised, dtype=torch.float32))
        self.label_embedding = nn.Parameter(torch.randn(num_classes, embedding_dim))
        self.gc1 = _GraphConvolution(embedding_dim, hidden_dim or in_channels)
        self.gc2 = _GraphConvolution(hidden_dim or in_channels, in_channels)
        self.proxies = nn.Parameter(torch.randn(num_classes, in_channels) * 0.01)
        # eval-mode cache of the graph's output; a buffer so it moves with .to(), not saved in checkpoints
        self.register_buffer("_cached_attention", None, persistent=False)
        self.register_load_state_dict_post_hook(lambda module, _keys: module._refresh_cache())

    def _graph_attention(self) -> torch.Tensor:
        nodes = F.leaky_relu(self.gc1(self.label_embedding, self.adjacency), 0.2)
        nodes = F.leaky_relu(self.gc2(nodes, self.adjacency), 0.2)  # [K, C]
        return torch.sigmoid(nodes.max(dim=0).values)

    def _refresh_cache(self) -> None:
        if self.training:
            self._cached_attention = None
            return
        with torch.no_grad():
            self._cached_attention = self._graph_attention()

    def channel_attention(self) -> torch.Tensor:
        """`[C]` in (0, 1): the graph's image-independent channel weights (a constant while in eval mode)."""
        if self.training or self._cached_attention is None:
            return self._graph_attention()
        return self._cached_attention

    def train(self, mode: bool = True) -> GCNHead:
        super().train(mode)
        self._refresh_cache()
        return self

    def forward(self, features: torch.Tensor) -> ModelOutput:
        batch, _, height, width = features.shape
        weighted = features * self.channel_attention().view(1, -1, 1, 1)  # [B, C, h, w]
        pooled = F.normalize(weighted.mean(dim=(2, 3)), dim=1)  # [B, C]
        proxies = F.normalize(self.proxies, dim=1)  # [K, C]
        logits = self.scale * pooled @ proxies.t()
        cam = torch.einsum("bchw,kc->bkhw", weighted, proxies)
        attention = torch.softmax(cam.flatten(2), dim=-1).reshape(batch, -1, height, width)
        return ModelOutput(logits, attention)

"""Decoders: one head per hint and output field, by CLRS type and location.

Logit formats (X is N, E or B for node, edge and graph fields):
mask / scalar ``[X]``; mask_one ``[X]`` (softmax within each graph); categorical ``[X, C]``;
node pointer ``[P]`` over the candidate pairs ``pointer_index`` [2, P] (softmax over the
candidates ``i`` of each node ``j``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter
from transformer_lens.hook_points import HookPoint

from hooked_nar.model.fields import Field


class NodeHead(nn.Module):
    """Linear read-out of node logits: ``z`` [N, 2d] (hidden state beside the input embedding)
    -> [N, C]."""

    def __init__(self, d: int, width: int) -> None:
        super().__init__()
        self.lin = nn.Linear(2 * d, width)

    def forward(self, z, edge_fts, batch, edge_index, pointer_index, num_graphs):
        """``z`` [N, 2d] -> node logits [N, C] (the other arguments are unused)."""
        return self.lin(z)


class GraphHead(nn.Module):
    """Linear read-out of graph logits from ``z`` max-pooled per graph -> [B, C]."""

    def __init__(self, d: int, width: int) -> None:
        super().__init__()
        self.lin = nn.Linear(2 * d, width)

    def forward(self, z, edge_fts, batch, edge_index, pointer_index, num_graphs):
        """``z`` [N, 2d] -> graph logits [B, C]."""
        return self.lin(scatter(z, batch, 0, dim_size=num_graphs, reduce="max"))


class EdgeHead(nn.Module):
    """Read-out of edge logits from sender, receiver and edge embeddings -> [E, C]."""

    def __init__(self, d: int, width: int) -> None:
        super().__init__()
        self.src, self.dst, self.edge = nn.Linear(2 * d, d), nn.Linear(2 * d, d), nn.Linear(d, d)
        self.out = nn.Linear(d, width)

    def forward(self, z, edge_fts, batch, edge_index, pointer_index, num_graphs):
        """``z`` [N, 2d] and edge embeddings [E, d] -> edge logits [E, C]."""
        src, dst = edge_index
        return self.out(torch.relu(self.src(z)[src] + self.dst(z)[dst] + self.edge(edge_fts)))


class PointerHead(nn.Module):
    """Score of ``i`` as the pointer of ``j``: ``<q(z_j), k(z_i)> / sqrt(d)`` (+ edge term)."""

    def __init__(self, d: int, use_edges: bool) -> None:
        super().__init__()
        self.query, self.key = nn.Linear(2 * d, d), nn.Linear(2 * d, d)
        self.edge = nn.Linear(d, 1) if use_edges else None

    def forward(self, z, edge_fts, batch, edge_index, pointer_index, num_graphs):
        """``z`` [N, 2d] -> pointer logits [P] over the candidates ``pointer_index`` [2, P]."""
        i, j = pointer_index
        scores = (self.query(z)[j] * self.key(z)[i]).sum(-1) / math.sqrt(self.query.out_features)
        if self.edge is not None:
            scores = scores + self.edge(edge_fts).squeeze(-1)
        return scores


def make_head(field: Field, d: int, dense_pointers: bool) -> nn.Module:
    """The head that decodes ``field`` (by location and type)."""
    if field.type == "pointer":
        if field.location != "node":
            raise ValueError(
                f"field {field.name!r}: {field.location} pointers are not supported by HookedNAR"
            )
        return PointerHead(d, use_edges=not dense_pointers)
    width = field.width
    return {"node": NodeHead, "edge": EdgeHead, "graph": GraphHead}[field.location](d, width)


class Decoder(nn.Module):
    """Heads for hints (hooked per step under ``steps.{t}.decoder``) and outputs (``decoder.hook_*``)."""

    def __init__(
        self, d: int, hint_fields, output_fields, dense_pointers: bool, with_heads: bool = True
    ) -> None:
        super().__init__()
        fields = [*hint_fields, *output_fields] if with_heads else []  # hooks only: no heads
        self.heads = nn.ModuleDict({f.name: make_head(f, d, dense_pointers) for f in fields})
        for f in output_fields:
            setattr(self, f"hook_{f.name}", HookPoint())

    def forward(
        self,
        fields: list[Field],
        z,
        edge_fts,
        batch,
        edge_index,
        pointer_index,
        num_graphs: int,
        hooks: nn.Module,
    ) -> dict[str, Tensor]:
        """Logits of every field in ``fields`` from ``z`` [N, 2d], each passed through its
        ``hook_<name>`` on ``hooks``; mask and scalar logits squeezed to [X]."""
        out = {}
        for f in fields:
            logits = self.heads[f.name](z, edge_fts, batch, edge_index, pointer_index, num_graphs)
            if f.type != "categorical" and f.type != "pointer":
                logits = logits.squeeze(-1)
            out[f.name] = getattr(hooks, f"hook_{f.name}")(logits)
        return out

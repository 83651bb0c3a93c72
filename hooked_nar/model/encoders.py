"""Encoders: one linear map per input (and re-encoded hint) field, by CLRS type and location.

Node fields are added into node features ``[N, d]``, edge fields (weights included) into
edge features ``[E, d]``, graph fields into graph features ``[B, d]``. A node pointer is
encoded on the edges of ``edge_index`` as the probability that the edge's source is the
target's pointer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from transformer_lens.hook_points import HookPoint

from hooked_nar.model.fields import Field


def field_features(field: Field, value: Tensor) -> Tensor:
    """A field's value as features ``[X, width]`` (categoricals are already one-hot)."""
    return value.float() if field.type == "categorical" else value.float().unsqueeze(-1)


class Encoder(nn.Module):
    """Linear embeddings of the inputs (and of encoded hints), summed per location into
    ``d_model``: node [N, d], edge [E, d], graph [B, d]."""

    def __init__(self, d_model: int, input_fields: list[Field], hint_fields: list[Field]) -> None:
        super().__init__()
        self.input_fields, self.hint_fields = input_fields, hint_fields
        # not `inputs` / `hints`: wrappers such as nnsight name their own attributes so
        self.input_embeddings = nn.ModuleDict(
            {f.name: nn.Linear(f.width, d_model) for f in input_fields}
        )
        self.hint_embeddings = nn.ModuleDict(
            {f.name: nn.Linear(f.width, d_model) for f in hint_fields}
        )
        self.d_model = d_model
        self.hook_node_emb = HookPoint()  # [N, d]
        self.hook_edge_emb = HookPoint()  # [E, d]
        self.hook_graph_emb = HookPoint()  # [B, d]

    def _add(self, layer: nn.Linear, field: Field, value: Tensor, fts: dict[str, Tensor]) -> None:
        fts[field.location] = fts[field.location] + layer(field_features(field, value))

    def encode_inputs(self, batch, num_nodes: int, num_edges: int, num_graphs: int):
        """Embeddings of the inputs: ``(node [N, d], edge [E, d], graph [B, d])``."""
        dev = batch.edge_index.device
        fts = {
            "node": torch.zeros(num_nodes, self.d_model, device=dev),
            "edge": torch.zeros(num_edges, self.d_model, device=dev),
            "graph": torch.zeros(num_graphs, self.d_model, device=dev),
        }
        for f in self.input_fields:
            self._add(self.input_embeddings[f.name], f, batch[f.name], fts)
        return (
            self.hook_node_emb(fts["node"]),
            self.hook_edge_emb(fts["edge"]),
            self.hook_graph_emb(fts["graph"]),
        )

    def encode_hints(self, hints: dict[str, Tensor], node: Tensor, edge: Tensor, graph: Tensor):
        """Add hint features (values, or probabilities for decoded hints) to the embeddings.

        ``hints`` holds, per field, node ``[N(, C)]``, edge ``[E(, C)]`` or graph ``[B(, C)]``
        values; node pointers are given on the edges ``[E]``.
        """
        fts = {"node": node, "edge": edge, "graph": graph}
        for f in self.hint_fields:
            if f.name in hints:
                loc = "edge" if f.type == "pointer" else f.location
                fts[loc] = fts[loc] + self.hint_embeddings[f.name](field_features(f, hints[f.name]))
        return fts["node"], fts["edge"], fts["graph"]

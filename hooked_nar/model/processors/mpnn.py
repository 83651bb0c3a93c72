"""``mpnn``: max-aggregation message passing (CLRS's MPNN / PGN baselines)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from hooked_nar.model.processors.base import Processor

if TYPE_CHECKING:
    from hooked_nar.model.config import NARConfig


class MPNN(Processor):
    """Max-aggregation message passing (CLRS's MPNN / PGN baselines)."""

    def __init__(self, cfg: NARConfig) -> None:
        super().__init__(cfg)
        d = cfg.d_model
        self.msg_src = nn.Linear(2 * d, d)
        self.msg_dst = nn.Linear(2 * d, d)
        self.msg_edge = nn.Linear(d, d)
        self.msg_graph = nn.Linear(d, d)
        self.msg_out = nn.Linear(d, d)

    def pre_messages(self, z, edge_fts, graph_fts, batch, edge_index) -> Tensor:
        """Pre-activation message of every edge (i -> j) [E, d]: sender, receiver, edge and graph
        terms (shared with the triplet processor)."""
        src, dst = edge_index
        return (
            self.msg_src(z)[src]
            + self.msg_dst(z)[dst]
            + self.msg_edge(edge_fts)
            + self.msg_graph(graph_fts)[batch[dst]]
        )

    def messages(self, z, edge_fts, graph_fts, batch, edge_index, hooks):
        """Message of every edge (i -> j) [E, d] from sender, receiver, edge and graph terms."""
        m = self.pre_messages(z, edge_fts, graph_fts, batch, edge_index)
        return self.msg_out(torch.relu(m)), self.cfg.aggregation

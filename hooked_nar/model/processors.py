"""Message-passing processors, one module whose weights every step shares.

Each processor maps ``(node_fts [N, d], edge_fts [E, d], graph_fts [B, d], h [N, d])``
to the next hidden state ``[N, d]``, calling the step's hook points on the way.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter, softmax, to_dense_adj, to_dense_batch

from hooked_nar.model.config import NARConfig


class Processor(nn.Module):
    """Shared update: ``h' = gate * LN(relu(W_z z + W_a aggr)) + (1 - gate) * h`` with ``z = [x, h]``."""

    def __init__(self, cfg: NARConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.cfg = cfg
        self.out_self = nn.Linear(2 * d, d)
        self.out_aggr = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d) if cfg.layer_norm else nn.Identity()
        self.dropout = nn.Dropout(cfg.dropout)
        if cfg.gated:
            self.gate_self = nn.Linear(2 * d, d)
            self.gate_aggr = nn.Linear(d, d)
            self.gate_out = nn.Linear(d, d)
            nn.init.constant_(self.gate_out.bias, -3.0)  # start close to "keep h", as CLRS does

    def messages(self, z, edge_fts, graph_fts, batch, edge_index, hooks) -> tuple[Tensor, str]:
        """Per-edge messages [E, d] and the reduction used to aggregate them."""
        raise NotImplementedError

    def forward(self, node_fts, edge_fts, graph_fts, h, batch, edge_index, hooks) -> Tensor:
        """One processor layer: input embeddings ``node_fts`` [N, d], ``edge_fts`` [E, d],
        ``graph_fts`` [B, d] and hidden state ``h`` [N, d] -> new hidden state [N, d]."""
        z = torch.cat([node_fts, h], dim=-1)
        msg, reduce = self.messages(z, edge_fts, graph_fts, batch, edge_index, hooks)
        msg = hooks.hook_msg(msg)
        aggr = scatter(msg, edge_index[1], 0, dim_size=z.shape[0], reduce=reduce)
        aggr = hooks.hook_aggr(aggr)
        out = self.norm(torch.relu(self.out_self(z) + self.out_aggr(aggr)))
        out = self.dropout(out)
        if not self.cfg.gated:
            return out
        gate = torch.sigmoid(self.gate_out(torch.relu(self.gate_self(z) + self.gate_aggr(aggr))))
        gate = hooks.hook_gate(gate)
        return gate * out + (1 - gate) * h


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


class TripletGMPNN(MPNN):
    """Gated MPNN with triplet (edge-to-edge) messages (Ibarz et al., 2022).

    The message of edge (j -> k) additionally receives ``max_i t(z_i, z_j, z_k, e_ij, e_ik, e_jk)``,
    computed densely per graph, so memory grows as ``n^3 * d_triplet`` per graph.
    """

    def __init__(self, cfg: NARConfig) -> None:
        super().__init__(cfg)
        d, t = cfg.d_model, cfg.d_triplet
        self.tri_i, self.tri_j, self.tri_k = (nn.Linear(2 * d, t) for _ in range(3))
        self.tri_ij, self.tri_ik, self.tri_jk = (nn.Linear(d, t) for _ in range(3))
        self.tri_graph = nn.Linear(d, t)
        self.tri_out = nn.Linear(t, d)

    def messages(self, z, edge_fts, graph_fts, batch, edge_index, hooks):
        """Edge messages [E, d] with triplet terms (max over the first node ``i`` of every
        (i, j, k)) added before the output layer; triplets at ``hook_triplet_msg``."""
        m = self.pre_messages(z, edge_fts, graph_fts, batch, edge_index)
        zd, node_mask = to_dense_batch(z, batch)  # [B, n, 2d]
        ed = to_dense_adj(edge_index, batch, edge_fts)  # [B, n, n, d]
        tri = (
            self.tri_i(zd)[:, :, None, None]
            + self.tri_j(zd)[:, None, :, None]
            + self.tri_k(zd)[:, None, None, :]
            + self.tri_ij(ed)[:, :, :, None]
            + self.tri_ik(ed)[:, :, None, :]
            + self.tri_jk(ed)[:, None, :, :]
            + self.tri_graph(graph_fts)[:, None, None, None]
        )  # [B, i, j, k, t]
        tri = tri.masked_fill(~node_mask[:, :, None, None, None], float("-inf")).amax(dim=1)
        ptr = torch.cat([batch.new_zeros(1), torch.bincount(batch).cumsum(0)])
        src, dst = edge_index
        g = batch[src]
        tri_edge = self.tri_out(tri[g, src - ptr[g], dst - ptr[g]])  # [E, d]
        tri_edge = hooks.hook_triplet_msg(tri_edge)
        return self.msg_out(torch.relu(m + tri_edge)), self.cfg.aggregation


class GraphTransformer(Processor):
    """Attention of each node over its in-neighbours, with edge features as a per-head bias."""

    def __init__(self, cfg: NARConfig) -> None:
        super().__init__(cfg)
        d, self.heads = cfg.d_model, cfg.num_heads
        self.query = nn.Linear(2 * d, d)
        self.key = nn.Linear(2 * d, d)
        self.value = nn.Linear(2 * d, d)
        self.edge_bias = nn.Linear(d, self.heads)
        self.graph_value = nn.Linear(d, d)

    def messages(self, z, edge_fts, graph_fts, batch, edge_index, hooks):
        """Attention-weighted messages [E, d] of every in-neighbour, with the pattern [E, H] at
        ``attn.hook_pattern``."""
        src, dst = edge_index
        E, H = src.shape[0], self.heads
        q = self.query(z)[dst].view(E, H, -1)
        k = self.key(z)[src].view(E, H, -1)
        v = (self.value(z)[src] + self.graph_value(graph_fts)[batch[dst]]).view(E, H, -1)
        scores = (q * k).sum(-1) / math.sqrt(q.shape[-1]) + self.edge_bias(edge_fts)
        pattern = hooks.attn.hook_pattern(softmax(scores, dst, num_nodes=z.shape[0]))  # [E, H]
        return (pattern[..., None] * v).reshape(E, -1), "sum"


PROCESSOR_CLASSES = {"mpnn": MPNN, "triplet_gmpnn": TripletGMPNN, "transformer": GraphTransformer}

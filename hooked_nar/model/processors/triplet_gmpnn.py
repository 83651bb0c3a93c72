"""``triplet_gmpnn``: gated MPNN with triplet (edge-to-edge) messages (Ibarz et al., 2022)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch_geometric.utils import to_dense_adj, to_dense_batch
from transformer_lens.hook_points import HookPoint

from hooked_nar.model.processors.mpnn import MPNN

if TYPE_CHECKING:
    from hooked_nar.model.config import NARConfig


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

    @classmethod
    def layer_hooks(cls, cfg: NARConfig) -> dict[str, nn.Module]:
        """MPNN's hook points plus ``hook_triplet_msg`` [E, d] right after ``hook_msg``."""
        hooks = super().layer_hooks(cfg)
        return {"hook_msg": hooks.pop("hook_msg"), "hook_triplet_msg": HookPoint(), **hooks}

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

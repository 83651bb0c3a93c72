"""``triplet_gmpnn``: gated MPNN with triplet (edge-to-edge) messages (Ibarz et al., 2022)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens.hook_points import HookPoint

from hooked_nar.model.processors.mpnn import MPNN

if TYPE_CHECKING:
    from hooked_nar.model.config import NARConfig

TRIPLET_CHUNK = 1 << 22  # floats of one chunk of triplets [edges, i, t]


class TripletGMPNN(MPNN):
    """Gated MPNN with triplet (edge-to-edge) messages (Ibarz et al., 2022).

    The message of edge (j -> k) additionally receives ``max_i t(z_i, z_j, z_k, e_ij, e_ik, e_jk)``,
    computed graph by graph in chunks of edges (see :meth:`triplet_max`).
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
        tri_edge = self.tri_out(self.triplet_max(z, edge_fts, graph_fts, batch, edge_index))
        tri_edge = hooks.hook_triplet_msg(tri_edge)
        return self.msg_out(torch.relu(m + tri_edge)), self.cfg.aggregation

    def triplet_max(
        self,
        z: Float[Tensor, "N 2d"],
        edge_fts: Float[Tensor, "E d"],
        graph_fts: Float[Tensor, "B d"],
        batch: Int[Tensor, " N"],
        edge_index: Int[Tensor, "2 E"],
    ) -> Float[Tensor, "E t"]:
        """``max_i t(z_i, z_j, z_k, e_ij, e_ik, e_jk)`` for every edge (j -> k) over the nodes
        i of its graph (a missing edge has features 0): the dense triplets of Ibarz et al.,
        computed graph by graph and in chunks of edges, so memory is ``n^2 * t`` for the
        pair terms plus ``TRIPLET_CHUNK`` floats, never ``n^3 * t``."""
        src, dst = edge_index
        a_i, a_j, a_k = self.tri_i(z), self.tri_j(z), self.tri_k(z)  # [N, t]
        e_ij, e_ik, e_jk = self.tri_ij(edge_fts), self.tri_ik(edge_fts), self.tri_jk(edge_fts)
        g_t = self.tri_graph(graph_fts)  # [B, t]
        ptr = torch.cat([batch.new_zeros(1), torch.bincount(batch).cumsum(0)])
        edge_graph = batch[src]
        out = z.new_empty(src.shape[0], a_i.shape[1])
        for g in range(ptr.shape[0] - 1):
            lo, n = int(ptr[g]), int(ptr[g + 1] - ptr[g])
            edges = (edge_graph == g).nonzero().squeeze(-1)
            j, k = src[edges] - lo, dst[edges] - lo
            # pair terms [i, j, t] (edge i -> j); the bias alone where there is no edge
            p_ij = self.tri_ij.bias.expand(n, n, -1).clone()
            p_ik = self.tri_ik.bias.expand(n, n, -1).clone()
            p_ij[j, k] = e_ij[edges]
            p_ik[j, k] = e_ik[edges]
            a_i_g = a_i[lo : lo + n]
            chunk = max(1, TRIPLET_CHUNK // max(1, n * a_i.shape[1]))
            for c in range(0, edges.shape[0], chunk):
                e, jc, kc = edges[c : c + chunk], j[c : c + chunk], k[c : c + chunk]
                tri = (
                    a_i_g[None]
                    + a_j[jc + lo][:, None]
                    + a_k[kc + lo][:, None]
                    + p_ij[:, jc].transpose(0, 1)
                    + p_ik[:, kc].transpose(0, 1)
                    + e_jk[e][:, None]
                    + g_t[g]
                )  # [edges of the chunk, i, t]
                out[e] = tri.amax(dim=1)
        return out

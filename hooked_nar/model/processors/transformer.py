"""``transformer``: attention of each node over its in-neighbours."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from torch import nn
from torch_geometric.utils import softmax

from hooked_nar.model.processors.base import AttentionHooks, Processor

if TYPE_CHECKING:
    from hooked_nar.model.config import NARConfig


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

    @classmethod
    def check_config(cls, cfg: NARConfig) -> None:
        """``d_model`` must split into ``num_heads`` equal heads."""
        if cfg.d_model % cfg.num_heads:
            raise ValueError(
                f"d_model={cfg.d_model} must be divisible by num_heads={cfg.num_heads}"
            )

    @classmethod
    def layer_hooks(cls, cfg: NARConfig) -> dict[str, nn.Module]:
        """The shared hook points plus ``attn.hook_pattern`` [E, heads]."""
        return {**super().layer_hooks(cfg), "attn": AttentionHooks()}

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

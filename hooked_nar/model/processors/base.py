"""The processor interface every processor implements, and the gated update most of them share.

A processor is one module whose weights every processor step shares. Besides its forward it
declares, in one place, the hook points each step (or layer) of it owns: :meth:`layer_hooks`
is read by :class:`~hooked_nar.model.hook_layout.StepHooks` to build ``steps.{t}.*``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from torch_geometric.utils import scatter
from transformer_lens.hook_points import HookPoint

if TYPE_CHECKING:
    from hooked_nar.model.config import NARConfig


class AttentionHooks(nn.Module):
    """Hook points of a step's attention (``attn.hook_pattern`` [E, H])."""

    def __init__(self) -> None:
        super().__init__()
        self.hook_pattern = HookPoint()  # [E, heads]


class Processor(nn.Module):
    """Shared update: ``h' = gate * LN(relu(W_z z + W_a aggr)) + (1 - gate) * h`` with ``z = [x, h]``.

    Subclasses implement :meth:`messages` and may add hook points in :meth:`layer_hooks`.
    """

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

    @classmethod
    def check_config(cls, cfg: NARConfig) -> None:
        """Raise ValueError when ``cfg`` does not fit this processor (called by NARConfig)."""

    @classmethod
    def layer_hooks(cls, cfg: NARConfig) -> dict[str, nn.Module]:
        """The hook points of one layer of this processor, by attribute name, in call order."""
        hooks: dict[str, nn.Module] = {"hook_msg": HookPoint(), "hook_aggr": HookPoint()}  # [E, d], [N, d]
        if cfg.gated:
            hooks["hook_gate"] = HookPoint()  # [N, d]
        return hooks

    def messages(self, z, edge_fts, graph_fts, batch, edge_index, hooks) -> tuple[Tensor, str]:
        """Per-edge messages [E, d] and the reduction used to aggregate them."""
        raise NotImplementedError

    def forward(
        self,
        node_fts: Float[Tensor, "N d"],
        edge_fts: Float[Tensor, "E d"],
        graph_fts: Float[Tensor, "B d"],
        h: Float[Tensor, "N d"],
        batch: Int[Tensor, " N"],
        edge_index: Int[Tensor, "2 E"],
        hooks: nn.Module,
    ) -> Float[Tensor, "N d"]:
        """One processor layer: input embeddings and hidden state ``h`` -> new hidden state."""
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

"""``discrete`` for bfs, dijkstra and mst_prim: one round of hard attention per step, after DNAR
(Rodionov & Prokhorenkova, "Discrete Neural Algorithmic Reasoning", ICML 2025).

Per processor step every node holds a *discrete state*: one categorical factor per discrete node
hint of the algorithm (a mask has 2 classes, a categorical hint C, the mask_one selection 2), so
the states are exactly CLRS's hint values. Beside it flow

* an *edge state*: the node pointer hint (``pi_h``), one marked in-edge per node, and
* a *scalar flow*: the node scalar hint (Dijkstra's ``d``, Prim's ``key``), which is never fed
  into a network: scalars are only compared (to break ties in hard attention) and carried
  along the chosen edge (``x_u + w_uv`` or ``w_uv``).

One step of the processor, with ``h`` the embedding of the hard state (``hook_node_in``):

1. *global selection* (algorithms with a node mask_one hint, e.g. Dijkstra's and Prim's ``u``):
   every node gets a score from its state (``hook_select_scores``); among the nodes of the top
   tier (within ``TIER`` of the graph's best) the one with the least scalar, then the least
   index, is selected (``hook_select``, exactly one per graph);
2. *hard top-1 attention* of every node over its in-edges (self-loop included): a score from
   the discrete features of the edge (``attn.hook_scores``), then the least scalar candidate
   (``x_u + w_uv``, ``w_uv`` or none), then the least sender index; the one-hot choice is
   ``attn.hook_pattern`` [E, 1] and becomes the new pointer (``hook_edge_state``); the
   chosen edge's message (``hook_msg`` [E, m] -> ``hook_aggr`` [N, m]) is what the node reads;
3. the node's next-state logits from its state, its selection bit and the chosen message
   (``hook_state_logits``), made hard (``hook_state``: exactly one-hot per factor in eval,
   straight-through Gumbel-softmax in training); the scalar takes the chosen candidate when
   the pointer moved, else keeps its value (``hook_scalar``);
4. ``hook_node_out`` = the embedding of the hard state, read by the next step.

Which scalar candidate the algorithm uses (a path length ``x_u + w_uv`` or an edge weight
``w_uv``) is learned from the training data: a buffer counts which candidate equals the next
scalar hint whenever a pointer moves.

Training is stepwise (``teacher_forcing = 1``): each step reads the true hints of its step and
is supervised with the next; the scores are trained with a ranking (hinge) loss whose targets
follow from the hints: the true choice must beat every candidate that would win the tie-break
by a margin of 1 and may not lose to any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn
from torch_geometric.utils import scatter
from transformer_lens.hook_points import HookPoint

from hooked_nar.algorithms import SPECS
from hooked_nar.model.fields import Field, algorithm_fields, pointer_targets
from hooked_nar.model.processors.base import AttentionHooks
from hooked_nar.model.processors.discrete.attention import (
    choice_loss,
    hard_factors,
    lexicographic_top1,
    lift,
    mlp,
    one_hot_state,
)

if TYPE_CHECKING:
    from hooked_nar.model.config import NARConfig


@dataclass(frozen=True)
class DiscreteLayout:
    """How an algorithm's hints map onto the discrete processor's states."""

    factors: tuple[Field, ...]  # discrete node hints, one categorical factor each
    selection: Field | None  # the node mask_one hint chosen by global selection
    pointer: Field  # the node pointer hint carried as the edge state
    scalar: Field | None  # the node scalar hint carried by the scalar flow

    @property
    def widths(self) -> list[int]:
        """Classes of every factor (2 for masks and the selection)."""
        return [f.num_classes if f.type == "categorical" else 2 for f in self.factors]


def discrete_layout(algorithm: str) -> DiscreteLayout:
    """The layout of ``algorithm``; ValueError when its hints do not fit the processor."""
    hints = algorithm_fields(algorithm, "hint")
    outputs = algorithm_fields(algorithm, "output")
    factors = [f for f in hints if f.location == "node" and f.type in ("mask", "categorical",
                                                                       "mask_one")]
    selection = [f for f in factors if f.type == "mask_one"]
    pointers = [f for f in hints if f.type == "pointer"]
    scalars = [f for f in hints if f.type == "scalar" and f.location == "node"]
    others = set(hints) - set(factors) - set(pointers) - set(scalars)
    if (len(selection) > 1 or len(pointers) != 1 or len(scalars) > 1 or others
            or [(f.location, f.type) for f in outputs] != [("node", "pointer")]):
        raise ValueError(
            f"processor='discrete' supports algorithms whose hints are discrete node hints "
            f"with at most one mask_one, one node pointer and at most one node scalar, and "
            f"whose output is one pointer (bfs, dijkstra, mst_prim), and dfs (its own "
            f"layout); {algorithm!r} has "
            f"{sorted(SPECS[algorithm])}"
        )
    return DiscreteLayout(tuple(factors), selection[0] if selection else None, pointers[0],
                          scalars[0] if scalars else None)

class OneRoundProcessor(nn.Module):
    """The discrete processor (see the module docstring). It runs the whole trajectory itself
    (``owns_trajectory``): ``HookedNAR`` hands it the batch and the steps' hook modules."""

    owns_trajectory = True

    def __init__(self, cfg: NARConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.layout = discrete_layout(cfg.algorithm)
        d, widths = cfg.d_model, self.layout.widths
        self.state_width = sum(widths)
        predicted = [w for f, w in zip(self.layout.factors, widths, strict=True)
                     if f is not self.layout.selection]
        self.embed = nn.Linear(self.state_width, d, bias=False)
        self.message_width = d + 3  # sender's h, sender selected, edge is pointer, self-loop
        self.edge_score = mlp(2 * d + 4, d, 1)
        self.select_score = mlp(d, d, 1) if self.layout.selection is not None else None
        self.update = mlp(d + 1 + self.message_width, d, sum(predicted))
        # votes for the scalar candidate: [path length x_u + w_uv, edge weight w_uv]
        self.register_buffer("scalar_votes", torch.zeros(2))

    @classmethod
    def check_config(cls, cfg: NARConfig) -> None:
        """One layer per step, no global readout, hints (they are its states), and an
        algorithm the layout fits."""
        if cfg.num_layers != 1 or cfg.global_readout:
            raise ValueError("processor='discrete' needs num_layers=1 and global_readout=False")
        if cfg.hint_mode == "none":
            raise ValueError("processor='discrete' needs hints (its states): hint_mode='none'")
        discrete_layout(cfg.algorithm)

    @classmethod
    def layer_hooks(cls, cfg: NARConfig) -> dict[str, nn.Module]:
        """Hook points of one step, in call order (shapes in the module docstring)."""
        hooks: dict[str, nn.Module] = {}
        if discrete_layout(cfg.algorithm).selection is not None:
            hooks["hook_select_scores"] = HookPoint()  # [N]
            hooks["hook_select"] = HookPoint()  # [N] 0/1, one node per graph
        attn = AttentionHooks()
        attn.hook_scores = HookPoint()  # [E] edge scores before the hard choice
        hooks.update({
            "hook_msg": HookPoint(),  # [E, d + 3]
            "attn": attn,  # attn.hook_pattern [E, 1]: 1 on the chosen in-edge of every node
            "hook_aggr": HookPoint(),  # [N, d + 3] message of the chosen in-edge
            "hook_edge_state": HookPoint(),  # [E] 0/1 new pointer edge
            "hook_state_logits": HookPoint(),  # [N, K]
            "hook_state": HookPoint(),  # [N, K] one-hot per factor
            "hook_scalar": HookPoint(),  # [N] scalar flow
        })
        return hooks

    # ----------------------------------------------------------------- states
    def true_state(self, batch, t: int) -> Float[Tensor, "N K"]:
        """One-hot state of hint step ``t`` from the batch's hints."""
        return one_hot_state(batch, t, self.layout.factors, self.layout.widths)

    def scalar_form(self) -> int:
        """0: candidates are path lengths ``x_u + w_uv``; 1: edge weights ``w_uv``."""
        return int(self.scalar_votes[1] > self.scalar_votes[0])

    def candidates(self, x: Tensor, weight: Tensor, src: Tensor) -> Tensor:
        """Scalar candidate of every edge [E] (float64), or zeros without a scalar hint."""
        if self.layout.scalar is None:
            return torch.zeros_like(weight)
        return weight if self.scalar_form() else x[src] + weight

    @torch.no_grad()
    def count_votes(self, batch, t: int, src: Tensor, weight: Tensor, target_edge: Tensor):
        """Training: which candidate equals the next scalar hint where the true pointer moves."""
        if self.layout.scalar is None:
            return
        name, dst = self.layout.scalar.name, batch.edge_index[1]
        x, x_next = batch[name][:, t].double(), batch[name][:, t + 1].double()
        moved = target_edge & (src != dst) & (x_next[dst] != x[dst])
        for form, cand in enumerate((x[src] + weight, weight)):
            self.scalar_votes[form] += ((cand - x_next[dst]).abs() < 1e-6)[moved].sum()

    # ----------------------------------------------------------------- forward
    def run(self, batch, steps: nn.ModuleList, decoder: nn.Module, num_steps: int
            ) -> tuple[dict, dict, Tensor]:
        """Run ``num_steps`` steps on ``batch``: ``(hint logits {name: [X, S]}, output logits
        {name: [X]}, loss)``, the loss being the stepwise hint loss (0 without hint targets).

        Hint logits: masks ``l_1 - l_0`` of their factor, categoricals the factor's logits,
        the selection its scores with the chosen node lifted 1 above the graph's best, the
        pointer the edge scores lifted likewise, the scalar its value."""
        layout, cfg = self.layout, self.cfg
        src, dst = batch.edge_index
        N, B = batch.num_nodes, batch.num_graphs
        node_graph = batch.batch
        steps_per_graph = (batch.length.view(-1) - 1).clamp(min=1)
        last_step = steps_per_graph[node_graph] - 1
        weight = batch.A.double()
        is_self = (src == dst).float()
        index = torch.arange(N, device=src.device, dtype=torch.float64)

        h = self.embed(self.true_state(batch, 0))
        pointer = pointer_targets(batch[layout.pointer.name][:, 0], batch, batch.edge_index).float()
        x = batch[layout.scalar.name][:, 0].double() if layout.scalar else index.new_zeros(N)
        hints: dict[str, list[Tensor]] = {f.name: [] for f in [*layout.factors, layout.pointer]}
        if layout.scalar is not None:
            hints[layout.scalar.name] = []
        out_logits = torch.zeros(src.shape[0], device=src.device)
        loss = h.new_zeros(())
        for t in range(num_steps):
            hooks = steps[t]
            forced = self.training and torch.rand(()) < cfg.teacher_forcing
            if forced:
                h = self.embed(self.true_state(batch, t))
                pointer = pointer_targets(batch[layout.pointer.name][:, t], batch,
                                          batch.edge_index).float()
                if layout.scalar is not None:
                    x = batch[layout.scalar.name][:, t].double()
            h = hooks.hook_node_in(h)
            T = batch[layout.pointer.name].shape[1]
            supervised = t + 1 < T
            valid_node = (t + 1 < batch.length.view(-1))[node_graph] if supervised else None

            # 1. global selection
            if layout.selection is not None:
                g = hooks.hook_select_scores(self.select_score(h).squeeze(-1))
                selected = lexicographic_top1(g, [x, index], node_graph, B)
                sel = hooks.hook_select(selected.to(h.dtype))
                hints[layout.selection.name].append(lift(g, sel > 0.5, node_graph, B))
                if supervised:
                    target = batch[layout.selection.name][:, t + 1] > 0.5
                    loss = loss + choice_loss(g, target, [x, index], node_graph, valid_node, B)
            else:
                sel = h.new_zeros(N)

            # 2. hard top-1 attention over in-edges
            if supervised:
                target_edge = pointer_targets(batch[layout.pointer.name][:, t + 1], batch,
                                              batch.edge_index)
                if self.training:
                    self.count_votes(batch, t, src, weight, target_edge)
            cand = self.candidates(x, weight, src)
            edge_fts = torch.stack([sel[src], pointer, is_self], -1)
            msg = hooks.hook_msg(torch.cat([h[src], edge_fts], -1))
            scores = self.edge_score(
                torch.cat([h[src], h[dst], sel[src, None], sel[dst, None], pointer[:, None],
                           is_self[:, None]], -1)).squeeze(-1)
            scores = hooks.attn.hook_scores(scores)
            chosen = lexicographic_top1(scores, [cand, src.double()], dst, N)
            pattern = hooks.attn.hook_pattern(chosen.to(h.dtype)[:, None])
            aggr = hooks.hook_aggr(scatter(pattern * msg, dst, 0, dim_size=N, reduce="sum"))
            new_pointer = hooks.hook_edge_state(pattern[:, 0])
            pointer_logits = lift(scores, new_pointer > 0.5, dst, N)
            hints[layout.pointer.name].append(pointer_logits)
            out_logits = torch.where((last_step == t)[dst], pointer_logits, out_logits)
            if supervised:
                loss = loss + choice_loss(scores, target_edge, [cand, src.double()], dst,
                                          valid_node[dst], N)

            # 3. next state and scalar
            predicted = self.update(torch.cat([h, sel[:, None], aggr], -1))
            logits = self.assemble(predicted, sel)
            logits = hooks.hook_state_logits(logits)
            state = hooks.hook_state(hard_factors(logits, self.layout.widths, self.training))
            moved = scatter(pattern[:, 0] * (1 - pointer), dst, 0, dim_size=N, reduce="sum")
            chosen_cand = scatter(pattern[:, 0].double() * cand, dst, 0, dim_size=N, reduce="sum")
            if layout.scalar is not None:
                x = hooks.hook_scalar(torch.where(moved > 0.5, chosen_cand, x))
                hints[layout.scalar.name].append(x.float())
            for f, part in zip(layout.factors, logits.split(layout.widths, -1), strict=True):
                if f is layout.selection:
                    continue
                hints[f.name].append(part if f.type == "categorical" else part[:, 1] - part[:, 0])
                if supervised:
                    target = batch[f.name][:, t + 1]
                    target = target.argmax(-1) if f.type == "categorical" else target.long()
                    ce = F.cross_entropy(part, target, reduction="none")
                    loss = loss + (ce * valid_node).sum() / valid_node.sum().clamp(min=1)
            pointer = new_pointer
            h = hooks.hook_node_out(self.embed(state))

        hint_logits = {}
        for name, values in hints.items():
            hooked = [getattr(steps[t].decoder, f"hook_{name}")(v) for t, v in enumerate(values)]
            hint_logits[name] = torch.stack(hooked, 1)
        outputs = {f.name: getattr(decoder, f"hook_{f.name}")(out_logits)
                   for f in algorithm_fields(cfg.algorithm, "output")}
        return hint_logits, outputs, loss

    def assemble(self, predicted: Tensor, sel: Tensor) -> Tensor:
        """State logits [N, K]: predicted factors, and the selection factor as the hard
        selection itself (``[1 - sel, sel]``)."""
        parts, start = [], 0
        for f, w in zip(self.layout.factors, self.layout.widths, strict=True):
            if f is self.layout.selection:
                parts.append(torch.stack([1 - sel, sel], -1))
            else:
                parts.append(predicted[:, start:start + w])
                start += w
        return torch.cat(parts, -1)

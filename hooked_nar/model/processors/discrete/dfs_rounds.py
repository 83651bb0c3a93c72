"""``discrete`` for dfs: two rounds of message passing per step, two selections and a clock.

CLRS records a DFS hint after each of four events (see :mod:`hooked_nar.algorithms.depth_first`):
the start of a tree at root ``s``, the discovery of ``u``, the push of ``u``'s first white
out-neighbour ``w`` (``pi[w] = s_prev[w] = u``, ``s_last = v = w``), and the finish of ``u``. The
hints of one record determine the next record, but not through one round of attention:

* after a finish record the next record already holds the **pop** (``u``'s stack predecessor
  ``p = s_prev[u]`` becomes the top) *and* ``p``'s **scan** (``p`` pushes its least-index white
  out-neighbour, or finishes). The pop runs against the pointer (``p`` learns from its child),
  the scan along ``p``'s out-edges: two rounds, both read by the sender of the edge;
* the DFS stack is not a hint of its own: it is implicit in ``s_prev`` (a linked list) and the
  grey nodes, and which event comes next is implicit in ``u``'s colour and in whether
  ``s_last == u`` (white ``u``: discover it; grey ``u`` on top: scan; ``s_last != u``: the
  pushed node is discovered next; black ``u``: pop). The processor reads these from the states,
  nothing is added for them;
* after a scan that pushes nothing, CLRS's loop variable ``v`` is ``n - 1``, a node the finish
  does not otherwise touch: ``v`` is a second global selection whose tie-break is the greatest
  index (the scanned-last node), where ``u``'s is the least (the next root is the least-index
  white node, as CLRS tries roots ``0 .. n-1``);
* the discovery and finishing times ``d``, ``f`` and the counter ``time`` (+0.01 per discovery
  and per finish) are scalars the discrete states do not hold: a **stamp** per node (none,
  discovered, finished; its targets are where ``d`` and ``f`` change) drives the scalar flow:
  ``time`` ticks once in a graph where a node is stamped and the stamped node takes the new
  ``time`` as ``d`` or ``f``, accumulated in float64 as CLRS does. No decision reads a scalar:
  ``pi`` is determined without them (a grey node's ``d`` is 0 only between its push and its
  discovery, which ``s_last != u`` already says).

One step, with ``h`` the embedding of the hard state (``hook_node_in``; factors ``color``, ``s``,
``u``, ``v``, ``s_last``, in that order in ``hook_state``) and the pointer bits of every edge
``(x -> y)``: ``pi[y] == x``, ``s_prev[y] == x``, self-loop:

1. *pop* (round 1, against the edges): every node ``x`` reads each out-neighbour's state and
   edge bits (``hook_msg`` [E, d]) with max aggregation (``hook_aggr`` [N, d]): a parent hears
   that its stack child finishes;
2. *select u* (``hook_select_scores``, ``hook_select``): the node the next record is at; top tier,
   then least index;
3. *scan* (round 2, hard top-1 attention of every node over its out-edges, self-loop included):
   ``attn.hook_scores`` [E], ``attn.hook_pattern`` [E, 1]: top tier, then least receiver index;
   the scanning node's choice is its push (the self-loop: no white neighbour, so it finishes),
   every other node keeps its self-loop. ``hook_push`` [N, 2]: pushed by a neighbour, pushed one;
4. *select v* (``hook_select_v_scores``, ``hook_select_v``): top tier, then greatest index;
5. next-state logits (``hook_state_logits`` [N, 11]; ``u`` and ``v`` are the selections) made
   hard (``hook_state``), and the stamp (``hook_stamp_logits``, ``hook_stamp`` [N, 3]);
6. the pointers: every node picks one in-edge for ``pi_h`` and one for ``s_prev`` from the edge
   bits and the push (``hook_pointer_scores`` [E, 2], ``hook_edge_state`` [E, 2] 0/1);
7. the clock: ``hook_time`` [B], ``hook_scalar`` [N, 2] (``d``, ``f``);
8. ``hook_node_out`` = the embedding of the hard state.

Training is stepwise (``teacher_forcing = 1``); within a step, what round 2 and the update read
(the selected ``u``, the push) is the true one in training and the model's own in evaluation.
The scan's targets come from ``pi_h`` (the new pointer edge, seen from its sender).
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

TICK = 0.01  # CLRS's time step per discovery and per finish
STAMPS = ("none", "discovered", "finished")


@dataclass(frozen=True)
class RoundsLayout:
    """How dfs's hints map onto the two-round processor's states."""

    factors: tuple[Field, ...]  # color, s, u, v, s_last: the hard state, one factor each
    selections: tuple[Field, ...]  # u, v: chosen by global selection
    pointers: tuple[Field, ...]  # pi_h, s_prev: the edge states
    scalars: tuple[Field, ...]  # d, f: node scalars; time: the graph's clock

    @property
    def widths(self) -> list[int]:
        """Classes of every factor (3 for ``color``, 2 for the masks)."""
        return [f.num_classes if f.type == "categorical" else 2 for f in self.factors]


def rounds_layout(algorithm: str) -> RoundsLayout:
    """The layout of ``algorithm`` (dfs); ValueError for any other."""
    if algorithm != "dfs":
        raise ValueError(f"the two-round discrete layout runs dfs only, not {algorithm!r}")
    hints = {f.name: f for f in algorithm_fields(algorithm, "hint")}
    pick = lambda *names: tuple(hints[n] for n in names)  # noqa: E731
    return RoundsLayout(pick("color", "s", "u", "v", "s_last"), pick("u", "v"),
                        pick("pi_h", "s_prev"), pick("d", "f", "time"))


class DFSRoundsProcessor(nn.Module):
    """The discrete processor for dfs (see the module docstring); runs the whole trajectory."""

    owns_trajectory = True

    def __init__(self, cfg: NARConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.layout = rounds_layout(cfg.algorithm)
        d = cfg.d_model
        self.state_width = sum(self.layout.widths)
        self.embed = nn.Linear(self.state_width, d, bias=False)
        self.pop_message = mlp(d + 3, d, d)  # receiver's h, edge bits
        self.select_u = mlp(2 * d, d, 1)  # h, pop
        self.scan_score = mlp(4 * d + 5, d, 1)  # sender's and receiver's h, pop, u; edge bits
        context = 2 * d + 3  # h, pop, u, push
        self.select_v = mlp(context, d, 1)
        self.update = mlp(context, d, 3 + 2 + 2 + len(STAMPS))  # color, s, s_last, stamp
        self.pointer_score = mlp(context + 4, d, 2)  # receiver's context, edge bits, push

    @classmethod
    def check_config(cls, cfg: NARConfig) -> None:
        """One layer per step, no global readout, hints (they are its states), dfs."""
        if cfg.num_layers != 1 or cfg.global_readout:
            raise ValueError("processor='discrete' needs num_layers=1 and global_readout=False")
        if cfg.hint_mode == "none":
            raise ValueError("processor='discrete' needs hints (its states): hint_mode='none'")
        rounds_layout(cfg.algorithm)

    @classmethod
    def layer_hooks(cls, cfg: NARConfig) -> dict[str, nn.Module]:
        """Hook points of one step, in call order (shapes in the module docstring)."""
        attn = AttentionHooks()
        attn.hook_scores = HookPoint()  # [E] scan scores before the hard choice
        names = ["hook_msg", "hook_aggr", "hook_select_scores", "hook_select", "attn",
                 "hook_push", "hook_select_v_scores", "hook_select_v", "hook_state_logits",
                 "hook_state", "hook_stamp_logits", "hook_stamp", "hook_pointer_scores",
                 "hook_edge_state", "hook_time", "hook_scalar"]
        return {n: attn if n == "attn" else HookPoint() for n in names}

    # ----------------------------------------------------------------- states
    def true_state(self, batch, t: int) -> Float[Tensor, "N K"]:
        """One-hot state of hint step ``t`` from the batch's hints."""
        return one_hot_state(batch, t, self.layout.factors, self.layout.widths)

    def true_pointers(self, batch, t: int) -> Float[Tensor, "E 2"]:
        """0/1 pointer edges of hint step ``t``: columns ``pi_h``, ``s_prev``."""
        return torch.stack([pointer_targets(batch[f.name][:, t], batch, batch.edge_index)
                            for f in self.layout.pointers], -1).float()

    # ----------------------------------------------------------------- forward
    def run(self, batch, steps: nn.ModuleList, decoder: nn.Module, num_steps: int
            ) -> tuple[dict, dict, Tensor]:
        """Run ``num_steps`` steps on ``batch``: ``(hint logits {name: [X, S]}, output logits
        {name: [X]}, loss)``, the loss being the stepwise hint loss (0 without hint targets).

        Hint logits: masks ``l_1 - l_0`` of their factor, ``color`` its logits, the selections
        and the pointers their scores with the choice lifted 1 above the group's best, the
        scalars their values."""
        src, dst = batch.edge_index
        N, B = batch.num_nodes, batch.num_graphs
        graph = batch.batch
        last_step = (batch.length.view(-1) - 1).clamp(min=1)[graph] - 1
        is_self = src == dst
        index = torch.arange(N, device=src.device, dtype=torch.float64)
        T = batch["pi_h"].shape[1]

        h = self.embed(self.true_state(batch, 0))
        pointers = self.true_pointers(batch, 0)
        d, f = batch["d"][:, 0].double(), batch["f"][:, 0].double()
        time = batch["time"][:, 0].double()
        hints: dict[str, list[Tensor]] = {
            f.name: [] for f in algorithm_fields(self.cfg.algorithm, "hint")}
        out_logits = torch.zeros(src.shape[0], device=src.device)
        loss = h.new_zeros(())
        for t in range(num_steps):
            hooks = steps[t]
            if self.training and torch.rand(()) < self.cfg.teacher_forcing:
                h = self.embed(self.true_state(batch, t))
                pointers = self.true_pointers(batch, t)
                d, f = batch["d"][:, t].double(), batch["f"][:, t].double()
                time = batch["time"][:, t].double()
            h = hooks.hook_node_in(h)
            supervised = t + 1 < T
            valid = (t + 1 < batch.length.view(-1))[graph] if supervised else None
            edge_bits = torch.cat([pointers, is_self[:, None].to(h.dtype)], -1)

            # 1. pop: every node reads its out-neighbours (max over out-edges, self-loop incl.)
            msg = hooks.hook_msg(self.pop_message(torch.cat([h[dst], edge_bits], -1)))
            pop = hooks.hook_aggr(scatter(msg, src, 0, dim_size=N, reduce="max"))

            # 2. the node the next record is at: top tier, then least index
            g_u = hooks.hook_select_scores(self.select_u(torch.cat([h, pop], -1)).squeeze(-1))
            sel_u = hooks.hook_select(lexicographic_top1(g_u, [index], graph, B).to(h.dtype))
            hints["u"].append(lift(g_u, sel_u > 0.5, graph, B))
            read_u = sel_u
            if supervised:
                target_u = batch["u"][:, t + 1] > 0.5
                loss = loss + choice_loss(g_u, target_u, [index], graph, valid, B)
                if self.training:
                    read_u = target_u.to(h.dtype)

            # 3. scan: every node picks one out-edge; top tier, then least receiver index
            node = torch.cat([h, pop, read_u[:, None]], -1)
            scores = self.scan_score(torch.cat([node[src], node[dst], edge_bits], -1)).squeeze(-1)
            scores = hooks.attn.hook_scores(scores)
            chosen = lexicographic_top1(scores, [dst.double()], src, N)
            pattern = hooks.attn.hook_pattern(chosen.to(h.dtype)[:, None])
            push_edge = pattern[:, 0] * (~is_self).to(h.dtype)
            if supervised:
                new_pi = pointer_targets(batch["pi_h"][:, t + 1], batch, batch.edge_index)
                pushed_edge = new_pi & ~pointer_targets(batch["pi_h"][:, t], batch,
                                                        batch.edge_index)
                pushes = scatter(pushed_edge.float(), src, 0, dim_size=N, reduce="max") > 0
                scan_target = pushed_edge | (is_self & ~pushes[src])
                loss = loss + choice_loss(scores, scan_target, [dst.double()], src, valid[src], N)
                if self.training:
                    push_edge = pushed_edge.to(h.dtype)
            push = hooks.hook_push(torch.stack([
                scatter(push_edge, dst, 0, dim_size=N, reduce="sum"),
                scatter(push_edge, src, 0, dim_size=N, reduce="sum")], -1))
            context = torch.cat([node, push], -1)

            # 4. v: top tier, then greatest index (n - 1 after a scan that pushed nothing)
            g_v = hooks.hook_select_v_scores(self.select_v(context).squeeze(-1))
            sel_v = hooks.hook_select_v(lexicographic_top1(g_v, [-index], graph, B).to(h.dtype))
            hints["v"].append(lift(g_v, sel_v > 0.5, graph, B))
            if supervised:
                target_v = batch["v"][:, t + 1] > 0.5
                loss = loss + choice_loss(g_v, target_v, [-index], graph, valid, B)

            # 5. next state and stamp
            predicted = self.update(context)
            color, s, s_last, stamp_logits = predicted.split([3, 2, 2, len(STAMPS)], -1)
            logits = hooks.hook_state_logits(torch.cat(
                [color, s, torch.stack([1 - sel_u, sel_u], -1),
                 torch.stack([1 - sel_v, sel_v], -1), s_last], -1))
            state = hooks.hook_state(hard_factors(logits, self.layout.widths, self.training))
            stamp_logits = hooks.hook_stamp_logits(stamp_logits)
            stamp = hooks.hook_stamp(hard_factors(stamp_logits, [len(STAMPS)], self.training))
            hints["color"].append(color)
            hints["s"].append(s[:, 1] - s[:, 0])
            hints["s_last"].append(s_last[:, 1] - s_last[:, 0])
            if supervised:
                targets = [(color, batch["color"][:, t + 1].argmax(-1)),
                           (s, batch["s"][:, t + 1].long()),
                           (s_last, batch["s_last"][:, t + 1].long()),
                           (stamp_logits, self.stamp_target(batch, t))]
                for part, target in targets:
                    ce = F.cross_entropy(part, target, reduction="none")
                    loss = loss + (ce * valid).sum() / valid.sum().clamp(min=1)

            # 6. pointers: one in-edge each for pi_h and s_prev
            ptr_scores = hooks.hook_pointer_scores(self.pointer_score(
                torch.cat([context[dst], edge_bits, push_edge[:, None]], -1)))
            new_pointers = [lexicographic_top1(ptr_scores[:, k], [src.double()], dst, N)
                            for k in range(2)]
            pointers = hooks.hook_edge_state(torch.stack(new_pointers, -1).to(h.dtype))
            for k, field in enumerate(self.layout.pointers):
                ptr_logits = lift(ptr_scores[:, k], pointers[:, k] > 0.5, dst, N)
                hints[field.name].append(ptr_logits)
                if supervised:
                    target = pointer_targets(batch[field.name][:, t + 1], batch, batch.edge_index)
                    loss = loss + choice_loss(ptr_scores[:, k], target, [src.double()], dst,
                                              valid[dst], N)
            out_logits = torch.where((last_step == t)[dst], hints["pi_h"][-1], out_logits)

            # 7. the clock: a stamped node takes the new time as d or f
            ticks = scatter(stamp[:, 1:].sum(-1).double(), graph, 0, dim_size=B, reduce="max")
            time = hooks.hook_time(time + TICK * ticks)
            stamped = stamp.double()
            scalars = hooks.hook_scalar(torch.stack([
                torch.where(stamped[:, 1] > 0.5, time[graph], d),
                torch.where(stamped[:, 2] > 0.5, time[graph], f)], -1))
            d, f = scalars[:, 0], scalars[:, 1]
            hints["d"].append(d.float())
            hints["f"].append(f.float())
            hints["time"].append(time.float())
            h = hooks.hook_node_out(self.embed(state))

        hint_logits = {}
        for name, values in hints.items():
            hooked = [getattr(steps[t].decoder, f"hook_{name}")(v) for t, v in enumerate(values)]
            hint_logits[name] = torch.stack(hooked, 1)
        outputs = {"pi": decoder.hook_pi(out_logits)}
        return hint_logits, outputs, loss

    @staticmethod
    def stamp_target(batch, t: int) -> Tensor:
        """Stamp class of every node at step ``t``: 1 where ``d`` changes, 2 where ``f`` does."""
        discovered = batch["d"][:, t + 1] != batch["d"][:, t]
        finished = batch["f"][:, t + 1] != batch["f"][:, t]
        return discovered.long() + 2 * finished.long()

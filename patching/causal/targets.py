"""Where a concept's consequence is measured, and the two measures the rule decides on.

Each boolean concept declares its :class:`~hooked_nar.concept_labels.Target` in
:data:`hooked_nar.concept_labels.CONCEPTS` (which hint, whose prediction, which step). For a node v
where the concept holds at the state processor step t computes (hint t + 1), the target
rows are ``(r, v, t')``: row node r (v itself or its neighbours), candidate v (the value that
carries the consequence: on for a mask hint, "points to v" for a pointer, "is v" for a
mask_one hint) and processor step t' (t or t + 1, a valid step of the graph).

The *margin toward the consequence* of a row is positive exactly when the model predicts the
consequence: a mask hint's logit; for a pointer the logit of r -> v minus the best other
candidate of r; for mask_one the logit of v minus the best other node of v's graph; for a
categorical hint (a concept without a declared target read from one) the logit of the
concept's class minus the best other (or the reverse for a "not class" concept).

- :func:`consequence_rows` (ablation): rows of every node where the concept holds, where
  the consequence is true (and, for ``new`` targets, was not true at the step before).
- :func:`steering_rows` (steering): rows of given sites where the consequence is false.
- :func:`margin_removed` (ablation's deciding measure): per graph, the fraction of the clean
  margin the intervention removes over the consequence rows the clean model gets right,
  ``sum(m_clean - m_edit) / sum(m_clean)`` (a ratio of sums: no near-zero denominator).
- :func:`flip_rate` (steering's deciding measure): per graph, the fraction of the steering
  rows the clean model gets right (margin < 0) whose margin turns positive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from hooked_nar.concept_labels import CONCEPTS, Target

if TYPE_CHECKING:
    from torch_geometric.data import Batch

    from hooked_nar.model import HookedNAR, NARLogits

__all__ = [
    "TargetRows",
    "concept_target",
    "consequence_rows",
    "flip_rate",
    "margin_removed",
    "margins",
    "steering_rows",
]


def concept_target(model: HookedNAR, concept: str) -> Target:
    """The declared target of ``concept`` for the model's algorithm; concepts without one
    (algorithms not studied yet) fall back to their own source hint at the same node and
    step (a read-out, not a downstream consequence). ValueError when the model predicts
    no such hint."""
    alg = model.cfg.algorithm
    c = CONCEPTS[alg][concept]
    target = c.target or Target(
        c.source_hint, "self", "same", False, f"its own {c.source_hint} (read-out)", c.rule
    )
    field = next((f for f in model.hint_fields if f.name == target.hint), None)
    if field is None or field.type not in ("mask", "pointer", "mask_one", "categorical"):
        raise ValueError(
            f"{alg} {concept}: target {target.hint!r} is not a mask, pointer, mask_one or "
            "categorical hint the model predicts"
        )
    if field.type == "categorical" and target.rule[0] not in ("class", "not_class"):
        raise ValueError(f"{alg} {concept}: a categorical target needs a class rule")
    if field.type == "mask_one" and target.nodes != "self":
        raise ValueError(f"{alg} {concept}: a mask_one target must be at the node itself")
    return target


@dataclass
class TargetRows:
    """Rows ``row`` [M] (node), ``cand`` [M] (global index of v), ``step`` [M] (processor
    step t'), ``graph`` [M] (graph of the row within the batch)."""

    row: Tensor
    cand: Tensor
    step: Tensor
    graph: Tensor

    def __len__(self) -> int:
        return int(self.row.numel())


def _expand(batch, nodes: Tensor, steps: Tensor, target: Target) -> TargetRows:
    """Target rows of the (node, step) pairs ``nodes`` / ``steps`` (before truth filters)."""
    if target.nodes == "self":
        row, cand, step = nodes, nodes, steps
    else:
        src, dst = batch.edge_index
        keep = src != dst
        src, dst = src[keep], dst[keep]
        order = torch.argsort(src, stable=True)
        src, dst = src[order], dst[order]
        start = torch.searchsorted(src, nodes)
        count = torch.searchsorted(src, nodes, right=True) - start
        owner = torch.repeat_interleave(torch.arange(nodes.numel(), device=nodes.device), count)
        offset = torch.arange(int(count.sum()), device=nodes.device) - torch.repeat_interleave(
            torch.cumsum(count, 0) - count, count
        )
        row = dst[start[owner] + offset]
        cand, step = nodes[owner], steps[owner]
    if target.step == "next":
        step = step + 1
    last = batch.length.view(-1)[batch.batch[row]] - 1  # valid processor steps: t' < last
    ok = step < last
    row, cand, step = row[ok], cand[ok], step[ok]
    return TargetRows(row, cand, step, batch.batch[row])


def _holds(batch, target: Target, rows: TargetRows, hint_step: Tensor) -> Tensor:
    """Whether the true hint at ``hint_step`` [M] carries the consequence for each row."""
    x = batch[target.hint]
    T = x.shape[1]
    inside = hint_step < T
    h = hint_step.clamp(max=T - 1)
    field_type = _hint_type(batch, target.hint)
    if field_type == "pointer":
        local = rows.cand - batch.ptr[rows.graph]
        value = x[rows.row, h].long() == local
    elif field_type == "categorical":
        value = (x[rows.row, h].argmax(-1) == target.rule[1]) == (target.rule[0] == "class")
    else:
        value = x[rows.row, h] > 0.5
    return value & inside


def _hint_type(batch, hint: str) -> str:
    from hooked_nar.algorithms.specs import SPECS
    from hooked_nar.data.loader import batch_algorithm

    return SPECS[batch_algorithm(batch)][hint].type


def _filter(rows: TargetRows, keep: Tensor) -> TargetRows:
    return TargetRows(rows.row[keep], rows.cand[keep], rows.step[keep], rows.graph[keep])


def consequence_rows(
    batch: Batch, labels: Bool[Tensor, "N S"], valid: Bool[Tensor, "N S"], target: Target
) -> TargetRows:
    """Target rows of every (v, t) where the concept holds (``labels & valid``), kept where
    the true hint carries the consequence at hint t' + 1 (and, ``target.new``, not at t')."""
    nodes, steps = (labels & valid).nonzero(as_tuple=True)
    rows = _expand(batch, nodes, steps, target)
    keep = _holds(batch, target, rows, rows.step + 1)
    if target.new:
        keep &= ~_holds(batch, target, rows, rows.step)
    rows = _filter(rows, keep)
    return _unique(rows, batch.num_nodes)


def steering_rows(batch: Batch, sites: Bool[Tensor, "N S"], target: Target) -> TargetRows:
    """Target rows of the steering ``sites`` where the true hint does not carry the
    consequence at hint t' + 1 (so that moving it is a change the truth did not make)."""
    nodes, steps = sites.nonzero(as_tuple=True)
    rows = _expand(batch, nodes, steps, target)
    return _filter(rows, ~_holds(batch, target, rows, rows.step + 1))


def _unique(rows: TargetRows, num_nodes: int) -> TargetRows:
    """Each (row, cand, step) once (two concept nodes can share a neighbour)."""
    if len(rows) == 0:
        return rows
    key = (rows.step * num_nodes + rows.row) * num_nodes + rows.cand
    _, first = _first_occurrence(key)
    return _filter(rows, first)


def _first_occurrence(key: Tensor) -> tuple[Tensor, Tensor]:
    uniq, inverse = torch.unique(key, return_inverse=True)
    dev = key.device
    pos = torch.arange(key.numel(), device=dev)
    first = torch.full((uniq.numel(),), key.numel(), dtype=torch.long, device=dev).scatter_reduce(
        0, inverse, pos, "amin"
    )
    mask = torch.zeros(key.numel(), dtype=torch.bool, device=dev)
    mask[first] = True
    return uniq, mask


def margins(
    model: HookedNAR, logits: NARLogits, batch: Batch, target: Target, rows: TargetRows
) -> Float[Tensor, " M"]:
    """The margin toward the consequence of every row (positive: the model predicts it; NaN
    where v is not a pointer candidate of r)."""
    field = next(f for f in model.hint_fields if f.name == target.hint)
    lg = logits.hints[target.hint].float()  # mask / mask_one [N, S]; pointer [P, S]
    if len(rows) == 0:
        return torch.zeros(0, device=lg.device)
    if field.type == "mask":
        return lg[rows.row, rows.step]
    if field.type == "categorical":
        x = lg[rows.row, rows.step]  # [M, C]
        k = target.rule[1]
        others = torch.cat([x[:, :k], x[:, k + 1 :]], 1).amax(1)
        return x[:, k] - others if target.rule[0] == "class" else others - x[:, k]
    if field.type == "mask_one":
        group, members = batch.batch, torch.arange(batch.num_nodes, device=lg.device)
        key_row, key_cand = batch.batch[rows.row], rows.cand
    else:
        i, j = logits.pointer_index
        group, members = j, i
        key_row, key_cand = rows.row, rows.cand
    return _grouped_margin(lg, group, members, key_row, key_cand, rows.step)


def _grouped_margin(
    lg: Tensor, group: Tensor, members: Tensor, key_row: Tensor, key_cand: Tensor, step: Tensor
) -> Tensor:
    """``lg`` [P, S] scores of candidate ``members[p]`` in group ``group[p]``: for each query
    (group ``key_row``, candidate ``key_cand``, step), its score minus the best other score
    of the group at that step (NaN when the candidate is not in the group)."""
    size = int(max(int(group.max()), int(key_row.max())) + 1)
    n = int(max(int(members.max()), int(key_cand.max())) + 1)
    code = group * n + members
    order = torch.argsort(code)
    sorted_code = code[order]
    query = key_row * n + key_cand
    pos = torch.searchsorted(sorted_code, query).clamp(max=code.numel() - 1)
    found = sorted_code[pos] == query
    p = order[pos]
    score = lg[p, step]
    dev = lg.device
    out = torch.full((query.numel(),), math.nan, device=dev)
    for t in step.unique().tolist():
        at = step == t
        s_t = lg[:, t]
        top1 = torch.full((size,), -math.inf, device=dev).scatter_reduce(0, group, s_t, "amax")
        is_top = s_t >= top1[group]
        top2 = torch.full((size,), -math.inf, device=dev).scatter_reduce(
            0, group, s_t.masked_fill(is_top, -math.inf), "amax"
        )
        ties = torch.zeros(size, device=dev).index_add_(0, group, is_top.float())
        g = key_row[at]
        sc = score[at]
        best_other = torch.where((sc >= top1[g]) & (ties[g] < 2), top2[g], top1[g])
        out[at] = sc - best_other
    return torch.where(found, out, torch.full_like(out, math.nan))


def _per_graph_sum(values: Tensor, graph: Tensor, num_graphs: int) -> Tensor:
    zeros = torch.zeros(num_graphs, dtype=torch.float64, device=values.device)
    return zeros.index_add_(0, graph, values.double())


def margin_removed(
    clean: Float[Tensor, " M"], edited: Float[Tensor, " M"], graph: Tensor, num_graphs: int
) -> Float[Tensor, " B"]:
    """Per graph ``sum(m_clean - m_edit) / sum(m_clean)`` over the rows with ``m_clean > 0``
    (NaN for a graph without one): 0 untouched, 1 on the decision boundary, > 1 flipped."""
    ok = (clean > 0) & torch.isfinite(clean) & torch.isfinite(edited)
    zero = torch.zeros_like(clean)
    num = _per_graph_sum(torch.where(ok, clean - edited, zero), graph, num_graphs)
    den = _per_graph_sum(torch.where(ok, clean, zero), graph, num_graphs)
    return torch.where(den > 0, num / den.clamp(min=1e-12), torch.full_like(num, math.nan))


def flip_rate(
    clean: Float[Tensor, " M"], edited: Float[Tensor, " M"], graph: Tensor, num_graphs: int
) -> tuple[Float[Tensor, " B"], Float[Tensor, " B"]]:
    """Per graph ``(flips, rows)``: how many rows with ``m_clean < 0`` have ``m_edit > 0``,
    and how many such rows there are (sum over rounds, then divide)."""
    ok = (clean < 0) & torch.isfinite(clean) & torch.isfinite(edited)
    flips = _per_graph_sum((ok & (edited > 0)).double(), graph, num_graphs)
    return flips, _per_graph_sum(ok.double(), graph, num_graphs)

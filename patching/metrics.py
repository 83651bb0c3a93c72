"""Metrics for patching: ``metric(logits, batch) -> Tensor [B]``, one value per graph.

Every factory returns a :class:`Metric` (a named callable). The value to be predicted is
fixed by a ``reference`` graph (or batch) given once, not read from the batch being scored:
patching compares runs on *different* graphs (clean, corrupted, patched), and a normalised
effect ``(patched - corrupt) / (clean - corrupt)`` only means something when all three are
scored against the same answer. ``reference=None`` scores a batch against its own truth
(model evaluation).

- continuous: :func:`pointer_logit_diff` (logit of the true parent minus logit of the
  counterfactual's parent, on the nodes where the two differ) and :func:`hint_log_prob`
  (mean log-probability of the true value of a hint or output);
- task: :func:`node_accuracy` (fraction of correct rows) and :func:`graph_accuracy`
  (1 when every row of the graph is correct).

Step alignment (as everywhere in hooked-nar): hint column ``t`` of
:class:`~hooked_nar.model.NARLogits` is processor step ``t``'s prediction of *hint step*
``t + 1``; a hint metric scores column ``t`` against ``reference[hint][:, t + 1]`` on the
steps where ``t + 1`` is a real step of both the reference and the scored graph.

A reference of one graph scores a batch of ``K`` copies of it (what patching runs): the
reference values are tiled over the copies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import scatter

from hooked_nar.algorithms import CATEGORIES, SPECS
from hooked_nar.data.loader import batch_algorithm
from hooked_nar.model.fields import (
    DENSE_POINTER_ALGORITHMS,
    Field,
    decode,
    log_probs,
    pointer_targets,
    row_graph,
)
from hooked_nar.model.hooked_nar import NARLogits
from hooked_nar.model.steps import hint_step_mask

__all__ = [
    "Metric",
    "graph_accuracy",
    "hint_log_prob",
    "node_accuracy",
    "pointer_logit_diff",
]


@dataclass(frozen=True)
class Metric:
    """A named metric ``(logits: NARLogits, batch) -> Tensor [B]`` (one value per graph,
    NaN for a graph with nothing to score). ``differentiable``: whether gradients flow
    (attribution patching needs it)."""

    name: str
    fn: Callable[[NARLogits, Data], Tensor]
    differentiable: bool = True

    def __call__(self, logits: NARLogits, batch) -> Tensor:
        return self.fn(logits, batch)

    def __str__(self) -> str:
        return self.name


# ------------------------------------------------------------------------------ helpers


def _field(algorithm: str, name: str, what: str = "field") -> Field:
    spec = SPECS[algorithm].get(name)
    if spec is None or spec.stage == "input":
        valid = [k for k, s in SPECS[algorithm].items() if s.stage != "input"]
        raise ValueError(f"{what}={name!r} is not a hint or output of {algorithm}; valid: {valid}")
    return Field(
        name, spec.stage, spec.location, spec.type, CATEGORIES.get(algorithm, {}).get(name, 1)
    )


def _num_rows(f: Field, batch) -> int:
    return {"node": batch.num_nodes, "edge": batch.edge_index.shape[1], "graph": batch.num_graphs}[
        f.location
    ]


def _tile(x: Tensor, rows: int, what: str) -> Tensor:
    """``x`` [X0, ...] repeated to ``rows`` rows (a batch of copies of the reference)."""
    if x.shape[0] == rows:
        return x
    if x.shape[0] == 0 or rows % x.shape[0]:
        raise ValueError(
            f"{what} has {x.shape[0]} rows, which do not tile the batch's {rows}; the reference "
            "must be the scored graph(s) or one set of graphs the batch repeats"
        )
    return x.repeat(rows // x.shape[0], *([1] * (x.dim() - 1)))


def _reference(f: Field, reference, batch) -> tuple[Tensor, Tensor]:
    """Target values tiled to the batch's rows and the reference length per graph [B]."""
    ref = batch if reference is None else reference
    if not isinstance(ref, Data):
        raise TypeError(f"reference must be a PyG Data/Batch or None, got {type(ref).__name__}")
    if f.name not in ref:
        raise ValueError(f"reference lacks the field {f.name!r}")
    if batch_algorithm(ref) != batch_algorithm(batch):
        raise ValueError(
            f"reference runs {batch_algorithm(ref)!r} but the batch runs {batch_algorithm(batch)!r}"
        )
    values = _tile(
        ref[f.name].to(batch.length.device), _num_rows(f, batch), f"reference[{f.name!r}]"
    )
    length = _tile(ref.length.view(-1), batch.num_graphs, "reference.length")
    return values, length


def _aligned(f: Field, logits: NARLogits, batch, reference) -> tuple[Tensor, Tensor, Tensor]:
    """``(scores, target, valid)``: logits of ``f`` and its target on the same rows.

    Outputs: ``[X]``; hints: ``[X, S]`` with column t scored against reference step t + 1 and
    ``valid`` False on steps that are not real for the reference or the scored graph.
    """
    target, ref_len = _reference(f, reference, batch)
    if f.stage == "output":
        scores = logits.outputs[f.name]
        valid = torch.ones(_num_rows(f, batch), dtype=torch.bool, device=scores.device)
        return scores, target, valid
    scores = logits.hints[f.name]  # [X, S(, C)]
    S = scores.shape[1]
    idx = torch.arange(1, S + 1, device=target.device).clamp(max=target.shape[1] - 1)
    target = target.index_select(1, idx)
    t = torch.arange(S, device=target.device)
    ok_ref = (t[None, :] + 1) < ref_len.view(-1, 1)  # [B, S]
    ok_run = hint_step_mask(batch, S)
    graph = row_graph(f, batch)
    return scores, target, (ok_ref & ok_run)[graph]


def _per_graph_mean(values: Tensor, valid: Tensor, graph: Tensor, num_graphs: int) -> Tensor:
    """Mean of ``values`` over valid entries per graph (rows indexed by ``graph``); NaN if none."""
    valid = valid.to(values.dtype)
    if values.dim() > 1:  # [X, S]: sum steps first
        values, valid = (values * valid).sum(1), valid.sum(1)
    else:
        values = values * valid
    total = scatter(values, graph, 0, dim_size=num_graphs, reduce="sum")
    count = scatter(valid, graph, 0, dim_size=num_graphs, reduce="sum")
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, float("nan")))


def _check_logits(f: Field, logits: NARLogits) -> None:
    where = logits.outputs if f.stage == "output" else logits.hints
    if f.name not in where:
        raise ValueError(
            f"the logits hold no {f.stage} {f.name!r} (outputs: {sorted(logits.outputs)}, "
            f"hints: {sorted(logits.hints)}); a model trained without hints has no hint logits"
        )


def _pick(scores: Tensor, target: Tensor, batch, pointer_index: Tensor) -> tuple[Tensor, Tensor]:
    """Score of the candidate ``(target[j], j)`` for every node j ``[N(, S)]`` and whether that
    candidate exists in ``pointer_index``."""
    is_t = pointer_targets(target, batch, pointer_index)
    j = pointer_index[1]
    picked = scatter(scores * is_t, j, 0, dim_size=batch.num_nodes, reduce="sum")
    present = scatter(is_t.to(scores.dtype), j, 0, dim_size=batch.num_nodes, reduce="sum") > 0
    return picked, present


# ------------------------------------------------------------------------- continuous


def hint_log_prob(hint: str, reference=None) -> Metric:
    """Mean log-probability of the true value of ``hint`` per graph ``[B]``.

    ``hint`` is a hint (averaged over valid (row, step), hint column t against hint step
    t + 1) or an output field (averaged over rows). True values come from ``reference`` (a
    Data/Batch; None: the scored batch). Per type: mask ``log sigmoid(+-logit)``; pointer and
    mask_one the normalised log-softmax at the true candidate; categorical the log-softmax of
    the true class; scalar ``-(prediction - target)^2`` (a unit Gaussian log-likelihood up to
    a factor and a constant). A true pointer that is not a candidate of the scored graph (an
    edge removed) raises ``ValueError``.
    """
    if not isinstance(hint, str):
        raise ValueError(f"hint must be a field name, got {hint!r}")

    def fn(logits: NARLogits, batch) -> Tensor:
        f = _field(batch_algorithm(batch), hint, "hint")
        _check_logits(f, logits)
        scores, target, valid = _aligned(f, logits, batch, reference)
        graph = row_graph(f, batch)
        if f.type == "mask":
            lp = F.logsigmoid(torch.where(target > 0.5, scores, -scores))
        elif f.type == "scalar":
            lp = -((scores - target.to(scores.dtype)) ** 2)
        elif f.type == "categorical":
            lp = (F.log_softmax(scores, -1) * target.to(scores.dtype)).sum(-1)
        elif f.type == "mask_one":
            lps = log_probs(f, scores, batch, logits.pointer_index)
            # one true row per graph (and step): the per-graph sum is its log-probability
            per_graph = scatter(lps * target.to(lps.dtype), graph, 0, dim_size=batch.num_graphs)
            ok = scatter(valid.to(lps.dtype), graph, 0, dim_size=batch.num_graphs, reduce="max")
            ok = ok > 0
            g = torch.arange(batch.num_graphs, device=lps.device)
            return _per_graph_mean(per_graph, ok, g, batch.num_graphs)
        else:  # pointer
            lps = log_probs(f, scores, batch, logits.pointer_index)
            lp, present = _pick(lps, target, batch, logits.pointer_index)
            if (valid & ~present).any():
                raise ValueError(
                    f"hint_log_prob({hint!r}): a true pointer of the reference is not a candidate "
                    "of the scored graph (was its edge removed?); use pointer_logit_diff or "
                    "another field"
                )
        return _per_graph_mean(lp, valid, graph, batch.num_graphs)

    ref = "" if reference is None else ", reference"
    return Metric(f"hint_log_prob({hint}{ref})", fn)


def _node_selection(nodes, n: int) -> Tensor | None:
    if nodes is None:
        return None
    nodes = torch.as_tensor(nodes)
    if nodes.dtype == torch.bool:
        if nodes.shape != (n,):
            raise ValueError(f"a bool nodes mask must have shape [{n}], got {tuple(nodes.shape)}")
        return nodes
    if nodes.dim() != 1 or nodes.is_floating_point():
        raise ValueError(f"nodes must be node indices [K] or a bool mask [{n}]")
    if nodes.numel() and (nodes.min() < 0 or nodes.max() >= n):
        raise ValueError(f"nodes holds indices outside 0..{n - 1}")
    mask = torch.zeros(n, dtype=torch.bool, device=nodes.device)
    mask[nodes.long()] = True
    return mask


def _candidates(data: Data) -> set[tuple[int, int]] | None:
    """Pointer candidates (i, j) of a graph (None: every pair, dense pointer heads)."""
    if batch_algorithm(data) in DENSE_POINTER_ALGORITHMS:
        return None
    return set(map(tuple, data.edge_index.t().tolist()))


def pointer_logit_diff(
    target: Tensor | Data,
    counterfactual_target: Tensor | Data,
    field: str = "pi",
    *,
    nodes=None,
    hint_step: int | None = None,
) -> Metric:
    """Logit of the true parent minus logit of the counterfactual's parent, averaged per
    graph ``[B]`` over the nodes where the two differ.

    ``target`` / ``counterfactual_target``: parents as within-graph node indices ``[N]``, or
    the clean and corrupted graphs (``Data``/``Batch``), whose ``field`` is read. ``field``:
    a pointer output (``"pi"``) or a pointer hint with ``hint_step`` (hint step s >= 1,
    predicted by processor step s - 1). ``nodes`` (indices or a bool mask ``[N]``) limits the
    nodes scored; by default the nodes whose parents differ and, when graphs are given,
    whose two candidate parents are pointer candidates in both graphs (after an edge is
    removed, the clean parent of the edge's end is no candidate of the corrupted graph and
    has no logit). Raises ``ValueError`` when no node is left, or when a scored candidate is
    missing from the scored graph. Logit differences within one node's softmax equal
    log-probability differences.
    """

    def values(x, name) -> tuple[Tensor, str | None, Data | None]:
        if isinstance(x, Data):
            if field not in x:
                raise ValueError(f"{name} lacks the field {field!r}")
            v = x[field]
            alg = batch_algorithm(x)
            return v, alg, x
        v = torch.as_tensor(x)
        if v.is_floating_point() or v.dim() not in (1, 2):
            raise ValueError(
                f"{name} must be parent indices [N] (long), got {v.dtype} {tuple(v.shape)}"
            )
        return v, None, None

    t, alg_t, g_t = values(target, "target")
    c, alg_c, g_c = values(counterfactual_target, "counterfactual_target")
    if alg_t and alg_c and alg_t != alg_c:
        raise ValueError(f"target runs {alg_t!r} but counterfactual_target runs {alg_c!r}")
    algorithm = alg_t or alg_c
    if algorithm is not None:
        f = _field(algorithm, field)
        if f.type != "pointer" or f.location != "node":
            raise ValueError(f"field={field!r} is a {f.location} {f.type}, not a node pointer")
        if f.stage == "hint" and hint_step is None:
            raise ValueError(f"field={field!r} is a hint: give hint_step (>= 1)")
    if hint_step is not None:
        if isinstance(hint_step, bool) or not isinstance(hint_step, int) or hint_step < 1:
            raise ValueError(
                f"hint_step must be an int >= 1 (hint 0 is never predicted), got {hint_step!r}"
            )

    def at_step(v: Tensor, name: str) -> Tensor:
        if v.dim() == 2:
            if hint_step is None:
                raise ValueError(f"{name} has a step axis: give hint_step")
            if hint_step >= v.shape[1]:
                raise ValueError(f"hint_step={hint_step} but {name} has {v.shape[1]} hint steps")
            return v[:, hint_step]
        return v

    t, c = at_step(t, "target").long(), at_step(c, "counterfactual_target").long()
    if t.shape != c.shape:
        raise ValueError(
            f"target has {t.shape[0]} nodes but counterfactual_target has {c.shape[0]}; "
            "they must describe the same node set"
        )
    chosen = t != c
    if g_t is not None and g_c is not None:
        if _ptr(g_t) != _ptr(g_c):
            raise ValueError("target and counterfactual_target graphs have different node sets")
        ptr = torch.tensor(_ptr(g_t), device=t.device)
        offset = torch.repeat_interleave(ptr[:-1], ptr.diff())  # global id of local node 0
        for g in (g_t, g_c):
            cand = _candidates(g)
            if cand is None:
                continue
            for parents in (t, c):
                pairs = zip((parents + offset).tolist(), range(len(parents)), strict=True)
                chosen &= torch.tensor(
                    [p in cand for p in pairs], dtype=torch.bool, device=chosen.device
                )
    selection = _node_selection(nodes, t.shape[0])
    if selection is not None:
        chosen = selection & (t != c)
    if not chosen.any():
        raise ValueError(
            f"pointer_logit_diff({field}): no node has different true and counterfactual "
            "parents that are candidates in both graphs; pick another counterfactual or use "
            "hint_log_prob"
        )

    def fn(logits: NARLogits, batch) -> Tensor:
        f = _field(batch_algorithm(batch), field)
        _check_logits(f, logits)
        scores = logits.outputs[field] if f.stage == "output" else logits.hints[field]
        if f.stage == "hint":
            if hint_step is None or hint_step - 1 >= scores.shape[1]:
                raise ValueError(f"hint_step={hint_step} is not predicted by this run")
            scores = scores[:, hint_step - 1]
        tt = _tile(t.to(scores.device), batch.num_nodes, "target")
        cc = _tile(c.to(scores.device), batch.num_nodes, "counterfactual_target")
        sel = _tile(chosen.to(scores.device), batch.num_nodes, "nodes")
        a, ok_a = _pick(scores, tt, batch, logits.pointer_index)
        b, ok_b = _pick(scores, cc, batch, logits.pointer_index)
        if (sel & ~(ok_a & ok_b)).any():
            raise ValueError(
                f"pointer_logit_diff({field}): a scored parent is not a pointer candidate of "
                "this graph (edge removed?); pass nodes= without it"
            )
        return _per_graph_mean(a - b, sel, batch.batch, batch.num_graphs)

    step = "" if hint_step is None else f"@{hint_step}"
    return Metric(f"pointer_logit_diff({field}{step}, {int(chosen.sum())} nodes)", fn)


def _ptr(data: Data) -> list[int]:
    ptr = getattr(data, "ptr", None)
    return [0, int(data.num_nodes)] if ptr is None else ptr.tolist()


# ------------------------------------------------------------------------------- task


def _correct(f: Field, logits: NARLogits, batch, reference, atol: float | None):
    _check_logits(f, logits)
    scores, target, valid = _aligned(f, logits, batch, reference)
    pred = decode(f, scores, batch, logits.pointer_index)
    if f.type == "scalar":
        if atol is None:
            raise ValueError(f"{f.name!r} is a scalar: accuracy needs a tolerance atol=")
        ok = (pred - target).abs() <= atol
    elif f.type == "categorical":
        ok = (pred == target).all(-1)
    elif f.type == "pointer":
        ok = pred == target.long()
    else:
        ok = pred == target.to(pred.dtype)
    return ok, valid, row_graph(f, batch)


def node_accuracy(field: str, reference=None, atol: float | None = None) -> Metric:
    """Fraction of correct rows per graph ``[B]`` (node/edge rows; hints: valid (row, step)).

    Decoded as :meth:`HookedNAR.predict` does (masks at logit 0, pointers and categoricals
    by argmax); scalars count as correct within ``atol``. True values from ``reference``
    (None: the scored batch). Not differentiable.
    """

    def fn(logits: NARLogits, batch) -> Tensor:
        f = _field(batch_algorithm(batch), field)
        ok, valid, graph = _correct(f, logits, batch, reference, atol)
        return _per_graph_mean(ok.float(), valid, graph, batch.num_graphs)

    return Metric(f"node_accuracy({field})", fn, differentiable=False)


def graph_accuracy(field: str, reference=None, atol: float | None = None) -> Metric:
    """1.0 for a graph whose every valid row (and step) of ``field`` is correct, else 0.0
    ``[B]`` (see :func:`node_accuracy`). Not differentiable."""

    def fn(logits: NARLogits, batch) -> Tensor:
        f = _field(batch_algorithm(batch), field)
        ok, valid, graph = _correct(f, logits, batch, reference, atol)
        wrong = (~ok & valid).float()
        if wrong.dim() > 1:
            wrong = wrong.sum(1)
            valid = valid.any(1)
        bad = scatter(wrong, graph, 0, dim_size=batch.num_graphs, reduce="sum")
        any_valid = scatter(valid.float(), graph, 0, dim_size=batch.num_graphs, reduce="sum") > 0
        out = (bad == 0).float()
        return torch.where(any_valid, out, torch.full_like(out, float("nan")))

    return Metric(f"graph_accuracy({field})", fn, differentiable=False)


def as_metric(metric: Metric | Callable | str | None, name: str | None = None) -> Metric:
    """A :class:`Metric` from a Metric or any callable ``(logits, batch) -> [B]``."""
    if isinstance(metric, Metric):
        return metric
    if callable(metric):
        return Metric(name or getattr(metric, "__name__", "metric"), metric)
    raise TypeError(f"metric must be a Metric or a callable (logits, batch) -> [B], got {metric!r}")

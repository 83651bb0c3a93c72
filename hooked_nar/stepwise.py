"""Stepwise training: every processor step of every trajectory in one forward.

Step ``t`` of a graph is fed the true hints of step ``t`` and supervised with those of step
``t + 1`` (and, at the graph's last step, with its outputs). With a model whose steps do not
carry a hidden state (``NARConfig(hidden_recurrence=False, hint_mode="encoded")``) the steps
are independent, so a batch of graphs becomes one batch of one-step graphs, one per real
step of every graph: copy ``t`` of a graph holds hints ``(t, t + 1)``. Its loss equals the
recurrent loss of the same model fed the true hints (teacher forcing 1), term for term.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Batch

from hooked_nar.algorithms.specs import SPECS
from hooked_nar.model.fields import field_loss, row_graph
from hooked_nar.model.hooked_nar import num_processor_steps


def check_stepwise_model(cfg) -> None:
    """ValueError unless ``cfg`` describes a model that stepwise training fits."""
    if cfg.hint_mode != "encoded" or cfg.hidden_recurrence:
        raise ValueError(
            "stepwise training needs hint_mode='encoded' and hidden_recurrence=False "
            f"(got hint_mode={cfg.hint_mode!r}, hidden_recurrence={cfg.hidden_recurrence})"
        )


def step_batch(batch: Batch) -> tuple[Batch, Tensor, Tensor]:
    """``batch`` (B graphs) as one one-step graph per real processor step of every graph.

    Returns ``(steps, copy_step [K], copy_graph [K])``: the batch of the ``K`` copies (copy
    ``k`` is step ``copy_step[k]`` of graph ``copy_graph[k]``, ordered by step, then graph;
    its hints ``[X, 2]`` are steps ``t`` and ``min(t + 1, T - 1)``, its length 2 where hint
    ``t + 1`` exists and 1 otherwise). Steps past a graph's last processor step are left out,
    so no work goes to padding.
    """
    N, B = batch.num_nodes, batch.num_graphs
    T = int(batch.step_mask.shape[1])
    S = max(T - 1, 1)
    dev = batch.edge_index.device
    t = torch.arange(S, device=dev)
    length = batch.length.view(-1)
    full_step, full_graph = t.repeat_interleave(B), torch.arange(B, device=dev).repeat(S)
    keep = full_step < num_processor_steps(length)[full_graph]  # [S * B] real copies
    node_copy = ((t * B)[:, None] + batch.batch[None, :]).reshape(-1)  # [S * N] copy of node
    node_keep = keep[node_copy]
    new_node = torch.cumsum(node_keep, 0) - 1
    new_graph = torch.cumsum(keep, 0) - 1
    edges = (batch.edge_index[:, None, :] + (t * N)[None, :, None]).reshape(2, -1)
    edge_keep = node_keep[edges[0]]
    copy_step, copy_graph = full_step[keep], full_graph[keep]
    K = int(keep.sum())
    out = Batch()
    out.edge_index = new_node[edges[:, edge_keep]]
    out.batch = new_graph[node_copy[node_keep]]
    counts = torch.bincount(out.batch, minlength=K)
    out.ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    out.length = torch.where(copy_step + 1 < length[copy_graph], 2, 1)
    out.step_mask = torch.arange(2, device=dev)[None, :] < out.length[:, None]
    pair = torch.stack([t, (t + 1).clamp(max=T - 1)], 1)  # [S, 2] hint steps of each copy
    rows = {"node": node_keep, "edge": edge_keep, "graph": keep}
    for name, spec in SPECS[_algorithm(batch)].items():
        if name not in batch:
            continue
        x = batch[name]
        if spec.stage == "hint":  # [X, T, ...] -> [S * X, 2, ...]
            x = x[:, pair].transpose(0, 1).reshape(-1, 2, *x.shape[2:])
        else:
            x = x.repeat(S, *([1] * (x.dim() - 1)))
        out[name] = x[rows[spec.location]]
    out.algorithm = [_algorithm(batch)] * K
    out._num_graphs = K
    out.num_nodes = int(node_keep.sum())
    return out, copy_step, copy_graph


def _algorithm(batch) -> str:
    alg = batch.algorithm
    return alg[0] if isinstance(alg, (list, tuple)) else alg


def stepwise_loss(model, batch: Batch) -> Tensor:
    """The training loss of ``model`` on ``batch`` with every step fed the true previous hints,
    all steps in one forward: outputs are supervised at each graph's last step, hint ``t + 1``
    at every real step ``t`` (padding never counts)."""
    check_stepwise_model(model.cfg)
    steps, copy_step, copy_graph = step_batch(batch)
    logits = model(steps)
    last = num_processor_steps(batch.length.view(-1)) - 1  # [B]
    is_last = copy_step == last[copy_graph]  # [B*S] copies that decode the outputs
    has_hint = copy_step + 1 < batch.length.view(-1)[copy_graph]
    pidx = logits.pointer_index
    total = pidx.new_zeros((), dtype=torch.float32)
    for f in model.output_fields:
        valid = is_last[row_graph(f, steps)]
        total = total + field_loss(f, logits.outputs[f.name], steps[f.name], valid, steps, pidx)
    for f in model.hint_fields:
        valid = has_hint[row_graph(f, steps)][:, None]
        target = steps[f.name][:, 1:2]
        total = total + field_loss(f, logits.hints[f.name][:, :1], target, valid, steps, pidx)
    return total

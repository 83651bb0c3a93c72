"""Stepwise training: every processor step of every trajectory in one forward.

Step ``t`` of a graph is fed the true hints of step ``t`` and supervised with those of step
``t + 1`` (and, at the graph's last step, with its outputs). With a model whose steps do not
carry a hidden state (``NARConfig(hidden_recurrence=False, hint_mode="encoded")``) the steps
are independent, so a batch of ``B`` graphs and ``S`` steps becomes one batch of ``B * S``
one-step graphs: copy ``t`` of every graph holds hints ``(t, t + 1)``. Its loss equals the
recurrent loss of the same model fed the true hints (teacher forcing 1), term for term.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Batch

from hooked_nar.algorithms.specs import SPECS
from hooked_nar.model.fields import row_graph
from hooked_nar.model.hooked_nar import num_processor_steps
from hooked_nar.model.typed_fields import field_loss


def check_stepwise_model(cfg) -> None:
    """ValueError unless ``cfg`` describes a model that stepwise training fits."""
    if cfg.hint_mode != "encoded" or cfg.hidden_recurrence:
        raise ValueError(
            "stepwise training needs hint_mode='encoded' and hidden_recurrence=False "
            f"(got hint_mode={cfg.hint_mode!r}, hidden_recurrence={cfg.hidden_recurrence})"
        )


def step_batch(batch: Batch) -> tuple[Batch, Tensor, Tensor]:
    """``batch`` (B graphs, T hint steps) as ``S = max(T - 1, 1)`` copies of one step each.

    Returns ``(steps, copy_step [B*S], copy_graph [B*S])``: the batch of copies (graph
    ``t * B + g`` is step ``t`` of graph ``g``, its hints ``[X, 2]`` are steps ``t`` and
    ``min(t + 1, T - 1)``, its length 2 where hint ``t + 1`` exists and 1 where it is padding)
    and, per copy, its step and original graph.
    """
    N, E, B = batch.num_nodes, batch.edge_index.shape[1], batch.num_graphs
    T = int(batch.step_mask.shape[1])
    S = max(T - 1, 1)
    t = torch.arange(S, device=batch.edge_index.device)
    copy_step, copy_graph = t.repeat_interleave(B), torch.arange(B, device=t.device).repeat(S)
    rows = {"node": N, "edge": E, "graph": B}
    out = Batch()
    out.edge_index = (batch.edge_index[:, None, :] + (t * N)[None, :, None]).reshape(2, -1)
    out.batch = (batch.batch[None, :] + (t * B)[:, None]).reshape(-1)
    starts = (batch.ptr[:-1][None, :] + (t * N)[:, None]).reshape(-1)
    out.ptr = torch.cat([starts, starts.new_tensor([N * S])])
    length = batch.length.view(-1)[copy_graph]
    out.length = torch.where(copy_step + 1 < length, 2, 1)
    out.step_mask = torch.arange(2, device=t.device)[None, :] < out.length[:, None]
    pair = torch.stack([t, (t + 1).clamp(max=T - 1)], 1)  # [S, 2] hint steps of each copy
    for name, spec in SPECS[_algorithm(batch)].items():
        if name not in batch:
            continue
        x = batch[name]
        if spec.stage == "hint":  # [X, T, ...] -> [S * X, 2, ...]
            x = x[:, pair].transpose(0, 1).reshape(S * rows[spec.location], 2, *x.shape[2:])
        else:
            x = x.repeat(S, *([1] * (x.dim() - 1)))
        out[name] = x
    out.algorithm = [_algorithm(batch)] * (B * S)
    out._num_graphs = B * S
    out.num_nodes = N * S
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

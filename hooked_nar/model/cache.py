"""``NARCache``: TransformerLens's ``ActivationCache`` with the graph structure of a batch.

Step validity, used everywhere: processor step t of graph g is valid when hint step t + 1
exists (``t + 1 < length_g``); a graph of length 1 runs one output-only step and
contributes no valid rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from transformer_lens import ActivationCache

from hooked_nar.model.steps import hint_step_mask, num_processor_steps


def row_layout(model, batch, num_rows: int) -> tuple[Tensor, Tensor]:
    """Graph ``[R]`` and within-graph node index ``[R]`` (-1: not a node row) of the rows of a
    hook of ``model`` on ``batch``, told apart by their number: nodes, edges, pointer
    candidates or graphs."""
    if num_rows == batch.num_nodes:
        return batch.batch, torch.arange(batch.num_nodes) - batch.ptr[batch.batch]
    if num_rows == batch.edge_index.shape[1]:
        g = batch.batch[batch.edge_index[0]]
        return g, torch.full_like(g, -1)
    pointer_index = model.pointer_index(batch)
    if num_rows == pointer_index.shape[1]:
        g = batch.batch[pointer_index[1]]
        return g, torch.full_like(g, -1)
    if num_rows == batch.num_graphs:
        g = torch.arange(batch.num_graphs)
        return g, torch.full_like(g, -1)
    raise ValueError(f"cannot tell which graph each of {num_rows} rows belongs to")


@dataclass
class StackedActivation:
    """One hook stacked over processor steps.

    ``values`` [S, X, ...], ``mask`` [S, X] (valid steps), ``graph`` [X] the graph of each
    row, ``node`` [X] the row's node index within its graph (-1 for non-node rows).
    """

    values: Tensor
    mask: Tensor
    graph: Tensor
    node: Tensor


@dataclass
class RowIndex:
    """Where each flattened row comes from, and the concepts true there.

    ``concepts[c]`` [R] is concept c at the state the step computes (hint t + 1);
    ``concepts_read[c]`` at the state it reads (hint t).
    """

    graph: Tensor
    node: Tensor
    step: Tensor
    concepts: dict[str, Tensor]
    concepts_read: dict[str, Tensor]

    def __len__(self) -> int:
        return int(self.graph.shape[0])


class NARCache(ActivationCache):
    """Activations of one ``run_with_cache`` call; ``cache["hook_node_out", 3]`` is step 3."""

    def __init__(self, cache_dict: dict[str, Tensor], model, batch) -> None:
        super().__init__(cache_dict, model, has_batch_dim=False)
        self.batch = batch
        self.num_steps = int(num_processor_steps(batch.length.view(-1)).max())
        self.step_mask = hint_step_mask(batch, self.num_steps)  # [B, S]

    def __getitem__(self, key):
        if isinstance(key, tuple):
            name, step = key
            key = f"steps.{step}.{name}"
        return super().__getitem__(key)

    def stack(self, name: str) -> StackedActivation:
        """``name`` (e.g. ``"hook_node_out"`` or ``"decoder.hook_reach_h"``) over every step."""
        keys = [f"steps.{t}.{name}" for t in range(self.num_steps)]
        missing = [k for k in keys if k not in self.cache_dict]
        if missing:
            raise KeyError(
                f"{name!r} is not cached for every step (missing {missing[:3]}...); "
                "cache it with names_filter or run_with_cache without a filter"
            )
        values = torch.stack([self.cache_dict[k] for k in keys])
        graph, node = row_layout(self.model, self.batch, values.shape[1])
        return StackedActivation(values, self.step_mask[graph].T, graph, node)

    def flatten(self, name: str = "hook_node_out") -> tuple[Tensor, RowIndex]:
        """Rows ``[R, d]`` of a node hook over valid (graph, node, step) triples, with labels.

        Rows are ordered by step, then node (stable across runs of the same batch).
        """
        from hooked_nar.concepts import concept_labels

        st = self.stack(name)
        if st.values.shape[1] != self.batch.num_nodes:
            raise ValueError(
                f"flatten needs a node-level hook; {name!r} has {st.values.shape[1]} rows"
            )
        step_idx, node_idx = st.mask.nonzero(as_tuple=True)
        rows = st.values[step_idx, node_idx]
        concepts = {}
        for state, out in (("computed", {}), ("read", {})):
            labels = concept_labels(self.batch, state=state)
            labels.pop("step_mask", None)
            for cname, lab in labels.items():
                out[cname] = lab[node_idx, step_idx]
            concepts[state] = out
        index = RowIndex(
            st.graph[node_idx], st.node[node_idx], step_idx, concepts["computed"], concepts["read"]
        )
        return rows, index

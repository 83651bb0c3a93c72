"""``NARCache``: TransformerLens's ``ActivationCache`` with the graph structure of a batch.

Step validity (the one rule, :func:`hooked_nar.data.loader.valid_processor_steps`): processor
step t of graph g is valid when hint step t + 1 exists (``t + 1 < length_g``); a graph of
length 1 runs one output-only step and contributes no valid rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from torch_geometric.data import Batch
from transformer_lens import ActivationCache

from hooked_nar.model.steps import hint_step_mask, num_processor_steps

if TYPE_CHECKING:
    from hooked_nar.model import HookedNAR

_NO_POSITIONS = (
    "graphs have no token positions (rows are nodes, edges or graphs): pos_slice must be None"
)
#: Why TransformerLens's block-specific cache methods are not available here.
_TRANSFORMER_ONLY = (
    "ActivationCache.{name} is about transformer blocks (attention heads, MLP neurons, "
    "LayerNorm, unembedding); a HookedNAR cache has processor steps instead: use "
    "cache.stack(name), cache.stack_activation(name) or cache.accumulated_resid()"
)


def _transformer_only(name: str):
    """A cache method that raises :data:`_TRANSFORMER_ONLY` for ``name``."""

    def method(self, *args, **kwargs):
        raise NotImplementedError(_TRANSFORMER_ONLY.format(name=name))

    method.__name__ = method.__qualname__ = name
    method.__doc__ = "Not available: transformer-specific (see :data:`_TRANSFORMER_ONLY`)."
    return method


def row_layout(
    model: HookedNAR, batch: Batch, num_rows: int
) -> tuple[Int[Tensor, " R"], Int[Tensor, " R"]]:
    """Graph ``[R]`` and within-graph node index ``[R]`` (-1: not a node row) of the rows of a
    hook of ``model`` on ``batch``, told apart by their number: nodes, edges, pointer
    candidates or graphs. On the batch's device."""
    dev = batch.edge_index.device
    if num_rows == batch.num_nodes:
        return batch.batch, torch.arange(batch.num_nodes, device=dev) - batch.ptr[batch.batch]
    if num_rows == batch.edge_index.shape[1]:
        g = batch.batch[batch.edge_index[0]]
        return g, torch.full_like(g, -1)
    pointer_index = model.pointer_index(batch)
    if num_rows == pointer_index.shape[1]:
        g = batch.batch[pointer_index[1]]
        return g, torch.full_like(g, -1)
    if num_rows == batch.num_graphs:
        g = torch.arange(batch.num_graphs, device=dev)
        return g, torch.full_like(g, -1)
    raise ValueError(f"cannot tell which graph each of {num_rows} rows belongs to")


@dataclass
class StackedActivation:
    """One hook stacked over processor steps.

    ``values`` [S, X, ...], ``mask`` [S, X] (valid steps), ``graph`` [X] the graph of each
    row, ``node`` [X] the row's node index within its graph (-1 for non-node rows).
    """

    values: Float[Tensor, "S X *d"]
    mask: Bool[Tensor, "S X"]
    graph: Int[Tensor, " X"]
    node: Int[Tensor, " X"]


@dataclass
class RowIndex:
    """Where each flattened row comes from, and the concepts true there.

    ``concepts[c]`` [R] is concept c at the state the step computes (hint t + 1);
    ``concepts_read[c]`` at the state it reads (hint t).
    """

    graph: Int[Tensor, " R"]
    node: Int[Tensor, " R"]
    step: Int[Tensor, " R"]
    concepts: dict[str, Tensor]  # [R] bool or float32
    concepts_read: dict[str, Tensor]

    def __len__(self) -> int:
        return int(self.graph.shape[0])


class NARCache(ActivationCache):
    """Activations of one ``run_with_cache`` call; ``cache["hook_node_out", 3]`` is step 3.

    ``num_processor_steps``: S = T_max - 1, the steps the processor ran (TransformerLens's
    layers); ``step_mask`` [B, S]: which of them are real for each graph."""

    def __init__(self, cache_dict: dict[str, Tensor], model, batch: Batch) -> None:
        super().__init__(cache_dict, model, has_batch_dim=False)
        self.batch = batch
        self.num_processor_steps = int(num_processor_steps(batch.length.view(-1)).max())
        self.step_mask = hint_step_mask(batch, self.num_processor_steps)  # [B, S]

    def __getitem__(self, key):
        if isinstance(key, tuple):
            name, step = key
            key = f"steps.{step}.{name}"
        return super().__getitem__(key)

    # ------------------------------------------- TransformerLens's cache API, steps as layers
    def _steps_up_to(self, layer: int | None) -> int:
        """Steps ``0 .. k-1`` that TransformerLens's ``layer`` argument selects (all for
        None / -1)."""
        if layer is None or layer == -1:
            return self.num_processor_steps
        if (
            isinstance(layer, bool)
            or not isinstance(layer, int)
            or not 0 <= layer <= self.num_processor_steps
        ):
            last = self.num_processor_steps - 1
            raise ValueError(f"layer={layer!r}: processor steps are 0..{last}")
        return layer

    def stack_activation(
        self, activation_name: str, layer: int = -1, sublayer_type: str | None = None
    ) -> Float[Tensor, "steps rows *d"]:
        """TransformerLens's ``stack_activation`` with processor steps as layers: the per-step
        hook ``activation_name`` (``"hook_node_out"``, ``"hook_msg"``, ...) at steps before
        ``layer`` (all with -1), stacked ``[steps, rows, ...]``. Steps past a graph's
        trajectory are included; :meth:`stack` gives their mask."""
        if sublayer_type is not None:
            raise ValueError("a processor step has no sublayers: pass sublayer_type=None")
        keys = [f"steps.{t}.{activation_name}" for t in range(self._steps_up_to(layer))]
        missing = [k for k in keys if k not in self.cache_dict]
        if missing:
            raise KeyError(f"{missing[:3]} not cached; run_with_cache without a names_filter")
        return torch.stack([self.cache_dict[k] for k in keys])

    def accumulated_resid(
        self,
        layer: int | None = None,
        incl_mid: bool = False,
        apply_ln: bool = False,
        pos_slice=None,
        mlp_input: bool = False,
        return_labels: bool = False,
    ):
        """TransformerLens's ``accumulated_resid`` with processor steps as layers: the node
        hidden state (the residual stream of a NAR) read by each step before ``layer``, plus,
        for all steps (``layer`` None / -1), the state after the last one: ``[k + 1, N, d]``
        (labels ``steps.{t}.hook_node_in`` ..., ``steps.{S-1}.hook_node_out``)."""
        if incl_mid or mlp_input:
            raise ValueError("a processor step has no mid-step residual or MLP input")
        if apply_ln:
            raise ValueError("a HookedNAR has no final LayerNorm to apply")
        if pos_slice is not None:
            raise ValueError(_NO_POSITIONS)
        k = self._steps_up_to(layer)
        labels = [f"steps.{t}.hook_node_in" for t in range(k)]
        if layer is None or layer == -1:
            labels.append(f"steps.{self.num_processor_steps - 1}.hook_node_out")
        missing = [name for name in labels if name not in self.cache_dict]
        if missing:
            raise KeyError(f"{missing[:3]} not cached; run_with_cache without a names_filter")
        stacked = torch.stack([self.cache_dict[name] for name in labels])
        return (stacked, labels) if return_labels else stacked

    def remove_batch_dim(self) -> NARCache:
        """The cache of a one-graph batch already has no batch dimension (rows are its nodes,
        edges, ...): returns ``self``. With several graphs their rows are concatenated, not
        stacked, so there is no batch dimension to remove: ValueError."""
        if self.batch.num_graphs != 1:
            raise ValueError(
                f"the cache holds {self.batch.num_graphs} graphs whose rows are concatenated "
                "(there is no batch dimension); select graph g's node rows with "
                "cache.batch.batch == g, or run_with_cache on one graph"
            )
        return self

    def apply_slice_to_batch_dim(self, batch_slice) -> NARCache:
        """Not available: see :meth:`remove_batch_dim`."""
        raise ValueError(
            "a NARCache has no batch dimension (graphs' rows are concatenated); select graph "
            "g's node rows with cache.batch.batch == g"
        )

    # TransformerLens cache methods that need a transformer's layout: each raises, naming itself
    decompose_resid = _transformer_only("decompose_resid")
    stack_head_results = _transformer_only("stack_head_results")
    compute_head_results = _transformer_only("compute_head_results")
    get_neuron_results = _transformer_only("get_neuron_results")
    stack_neuron_results = _transformer_only("stack_neuron_results")
    apply_ln_to_stack = _transformer_only("apply_ln_to_stack")
    get_full_resid_decomposition = _transformer_only("get_full_resid_decomposition")
    logit_attrs = _transformer_only("logit_attrs")

    def stack(self, name: str) -> StackedActivation:
        """``name`` (e.g. ``"hook_node_out"`` or ``"decoder.hook_reach_h"``) over every step."""
        keys = [f"steps.{t}.{name}" for t in range(self.num_processor_steps)]
        missing = [k for k in keys if k not in self.cache_dict]
        if missing:
            raise KeyError(
                f"{name!r} is not cached for every step (missing {missing[:3]}...); "
                "cache it with names_filter or run_with_cache without a filter"
            )
        values = torch.stack([self.cache_dict[k] for k in keys])
        graph, node = row_layout(self.model, self.batch, values.shape[1])
        return StackedActivation(values, self.step_mask[graph].T, graph, node)

    def flatten(self, name: str = "hook_node_out") -> tuple[Float[Tensor, "R d"], RowIndex]:
        """Rows ``[R, d]`` of a node hook over valid (graph, node, step) triples, with labels.

        Rows are ordered by step, then node (stable across runs of the same batch).
        """
        from hooked_nar.concept_labels import concept_labels

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

"""The model's fields (inputs, hints, outputs of an algorithm, derived from its CLRS spec) and
what each CLRS type means for them: losses, hard decoding and hint re-encoding.

Losses and decoders take the logits of one field in the formats of
:mod:`hooked_nar.model.decoders`, either for one step or stacked over steps on dimension 1
(``[X, S(, C)]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.utils import scatter

from hooked_nar.algorithms import CATEGORIES, SPECS, registered_algorithms

if TYPE_CHECKING:
    from torch_geometric.data import Batch

#: Algorithms whose pointer heads score every node of the graph instead of the in-edges of
#: ``edge_index`` (``Algorithm.dense_pointers`` in the registry).
DENSE_POINTER_ALGORITHMS = frozenset(
    name for name, algorithm in registered_algorithms().items() if algorithm.dense_pointers
)


@dataclass(frozen=True)
class Field:
    """One model field (input, hint or output): its name, location, type and number of classes."""

    name: str
    stage: str  # input | hint | output
    location: str  # node | edge | graph
    type: str  # mask | mask_one | pointer | scalar | categorical
    num_classes: int = 1

    @property
    def width(self) -> int:
        """Feature width when encoded (and logit width for non-pointer decoders)."""
        return self.num_classes if self.type == "categorical" else 1


def algorithm_fields(algorithm: str, stage: str) -> list[Field]:
    """The fields of ``algorithm`` at ``stage``, in a stable (sorted) order."""
    cats = CATEGORIES.get(algorithm, {})
    return [
        Field(name, s.stage, s.location, s.type, cats.get(name, 1))
        for name, s in sorted(SPECS[algorithm].items())
        if s.stage == stage
    ]


def segment_log_softmax(scores: Tensor, index: Tensor, num_segments: int) -> Tensor:
    """Log-softmax of ``scores`` [E, ...] within the groups given by ``index`` [E]."""
    m = scatter(scores.detach(), index, 0, dim_size=num_segments, reduce="max")
    shifted = scores - m[index]
    lse = torch.log(scatter(shifted.exp(), index, 0, dim_size=num_segments, reduce="sum"))
    return shifted - lse[index]


def complete_pairs(ptr: Tensor) -> Tensor:
    """Every ordered pair (i, j) of nodes in the same graph, as an index [2, sum n_g^2]."""
    sizes = ptr[1:] - ptr[:-1]
    rows, cols = [], []
    for start, n in zip(ptr[:-1].tolist(), sizes.tolist(), strict=True):
        r = torch.arange(start, start + n, device=ptr.device)
        rows.append(r.repeat_interleave(n))
        cols.append(r.repeat(n))
    return torch.stack([torch.cat(rows), torch.cat(cols)])


def row_graph(field: Field, batch: Batch) -> Tensor:
    """The graph of every row of a node ``[N]``, edge ``[E]`` or graph ``[B]`` field."""
    if field.location == "node":
        return batch.batch
    if field.location == "edge":
        return batch.batch[batch.edge_index[0]]
    return torch.arange(batch.num_graphs, device=batch.batch.device)


def pointer_targets(target: Tensor, batch: Batch, pointer_index: Tensor) -> Tensor:
    """Bool ``[P(, S)]``: candidate (i, j) is the true pointer of j (``target`` within-graph)."""
    i, j = pointer_index
    parent = target.long() + batch.ptr[batch.batch].view(-1, *([1] * (target.dim() - 1)))
    return parent[j] == i.view(-1, *([1] * (target.dim() - 1)))


def log_probs(field: Field, logits: Tensor, batch: Batch, pointer_index: Tensor) -> Tensor:
    """Normalised log-probabilities for mask_one and pointer fields."""
    if field.type == "pointer":
        return segment_log_softmax(logits, pointer_index[1], batch.num_nodes)
    index = row_graph(field, batch)
    return segment_log_softmax(logits, index, batch.num_graphs)


def field_loss(
    field: Field, logits: Tensor, target: Tensor, valid: Tensor, batch: Batch, pointer_index: Tensor
) -> Tensor:
    """Mean loss over the valid rows (``valid`` [X(, S)] bool, node/edge/graph rows).

    mask: BCE; scalar: MSE; categorical, mask_one, pointer: cross-entropy.
    """
    if field.type == "mask":
        per_row = F.binary_cross_entropy_with_logits(logits, target.float(), reduction="none")
    elif field.type == "scalar":
        per_row = (logits - target.float()) ** 2
    elif field.type == "categorical":
        per_row = -(F.log_softmax(logits, -1) * target.float()).sum(-1)
    elif field.type == "mask_one":
        lp = log_probs(field, logits, batch, pointer_index)
        per_graph = -scatter_rows(lp * target.float(), row_graph(field, batch), batch.num_graphs)
        valid_g = scatter_rows(valid.float(), row_graph(field, batch), batch.num_graphs) > 0
        return (per_graph * valid_g).sum() / valid_g.sum().clamp(min=1)
    elif field.type == "pointer":
        lp = log_probs(field, logits, batch, pointer_index)
        is_true = pointer_targets(target, batch, pointer_index)
        per_row = -scatter_rows(lp * is_true, pointer_index[1], batch.num_nodes)
    else:
        raise ValueError(f"unknown field type {field.type!r}")
    valid = valid.float()
    return (per_row * valid).sum() / valid.sum().clamp(min=1)


def scatter_rows(src: Tensor, index: Tensor, size: int) -> Tensor:
    """Sum ``src`` [P, ...] into ``size`` rows by ``index`` [P] -> [size, ...]."""
    out = src.new_zeros((size, *src.shape[1:]))
    return out.index_add_(0, index, src)


def decode(field: Field, logits: Tensor, batch: Batch, pointer_index: Tensor) -> Tensor:
    """Hard predictions in the dataset's format: masks {0, 1}, one-hot categoricals and
    mask_one, scalars as is, pointers as the parent's index within its graph (``[N(, S)]``)."""
    if field.type == "mask":
        return (logits > 0).float()
    if field.type == "scalar":
        return logits
    if field.type == "categorical":
        return F.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    lp = log_probs(field, logits, batch, pointer_index)
    if field.type == "mask_one":
        index = row_graph(field, batch)
        best = scatter_max_rows(lp, index, batch.num_graphs)
        return (lp == best[index]).float()  # ties are measure-zero for float logits
    i, j = pointer_index
    best = scatter_max_rows(lp, j, batch.num_nodes)
    is_best = lp == best[j]
    trail = [1] * (lp.dim() - 1)
    cand = torch.where(is_best, i.view(-1, *trail), torch.full_like(i.view(-1, *trail), -1))
    parent = cand.new_full((batch.num_nodes, *lp.shape[1:]), -1).scatter_reduce(
        0, j.view(-1, *trail).expand_as(cand), cand, reduce="amax"
    )
    return parent - batch.ptr[batch.batch].view(-1, *trail)


def scatter_max_rows(src: Tensor, index: Tensor, size: int) -> Tensor:
    """Max of ``src`` [P, ...] per row of ``index`` [P] -> [size, ...] (-inf for empty rows)."""
    out = src.new_full((size, *src.shape[1:]), float("-inf"))
    return out.scatter_reduce(
        0, index.view(-1, *([1] * (src.dim() - 1))).expand_as(src), src, "amax"
    )


def soft_values(field: Field, logits: Tensor, batch: Batch, pointer_index: Tensor) -> Tensor:
    """Decoded hints as probabilities, for re-encoding (pointers: probability per candidate)."""
    if field.type == "mask":
        return torch.sigmoid(logits)
    if field.type == "scalar":
        return logits
    if field.type == "categorical":
        return torch.softmax(logits, -1)
    return log_probs(field, logits, batch, pointer_index).exp()


def hard_values(field: Field, logits: Tensor, batch: Batch, pointer_index: Tensor) -> Tensor:
    """Decoded hints in the format of :func:`true_values` (one-hot pointers, 0/1 masks)."""
    with torch.no_grad():
        return true_values(field, decode(field, logits, batch, pointer_index), batch, pointer_index)


def true_values(field: Field, target: Tensor, batch: Batch, pointer_index: Tensor) -> Tensor:
    """Ground-truth hints in the same format as :func:`soft_values`."""
    if field.type == "pointer":
        return pointer_targets(target, batch, pointer_index).float()
    return target.float()

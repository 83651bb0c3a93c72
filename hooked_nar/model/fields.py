"""What the model encodes and decodes for an algorithm, derived from its CLRS spec."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.utils import scatter

from hooked_nar.algorithms import CATEGORIES, SPECS, registered_algorithms

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


def row_graph(field: Field, batch) -> Tensor:
    """The graph of every row of a node ``[N]``, edge ``[E]`` or graph ``[B]`` field."""
    if field.location == "node":
        return batch.batch
    if field.location == "edge":
        return batch.batch[batch.edge_index[0]]
    return torch.arange(batch.num_graphs, device=batch.batch.device)

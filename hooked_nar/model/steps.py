"""How many processor steps a graph runs and which of them are real (supervised).

The rule itself lives in :func:`hooked_nar.data.loader.valid_processor_steps`; the model,
its cache, the metrics and the concept labels all go through it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jaxtyping import Bool, Int
from torch import Tensor

from hooked_nar.data.loader import valid_processor_steps

if TYPE_CHECKING:
    from torch_geometric.data import Batch

__all__ = ["hint_step_mask", "num_processor_steps"]


def num_processor_steps(length: Int[Tensor, " B"]) -> Int[Tensor, " B"]:
    """Processor steps each graph runs: ``T - 1``, at least one (outputs need a step)."""
    return (length - 1).clamp(min=1)


def hint_step_mask(batch: Batch, num_steps: int) -> Bool[Tensor, "B S"]:
    """``[B, S]``: processor step t of graph g is supervised (hint t+1 exists, t+1 < T_g)."""
    return valid_processor_steps(batch.length, num_steps)

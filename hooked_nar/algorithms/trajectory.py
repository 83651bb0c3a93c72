"""The record of one algorithm execution, in CLRS's names, shapes and types."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hooked_nar.algorithms.specs import SPECS, FieldSpec


@dataclass
class Trajectory:
    """Inputs, hints and outputs of one execution of a CLRS algorithm.

    Arrays keep CLRS's names and values (masks, scalars and one-hot categoricals as
    float64, pointers as int64 node indices). Hints carry a leading time axis
    ``[T, ...]``; hint step 0 is the state before the first iteration. Unlike CLRS,
    1-node graphs keep their node axis.
    """

    algorithm: str
    inputs: dict[str, np.ndarray]
    hints: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]

    @property
    def spec(self) -> dict[str, FieldSpec]:
        """``{field: (stage, location, type)}`` for every field of the algorithm."""
        return SPECS[self.algorithm]

    @property
    def length(self) -> int:
        """Number of hint steps ``T`` (the state before the first iteration included)."""
        return int(next(iter(self.hints.values())).shape[0])

    @property
    def num_nodes(self) -> int:
        """Number of nodes n (the length of input ``pos``)."""
        return int(self.inputs["pos"].shape[0])

    def __repr__(self) -> str:
        return f"Trajectory({self.algorithm!r}, num_nodes={self.num_nodes}, length={self.length})"

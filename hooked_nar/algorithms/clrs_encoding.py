"""How CLRS encodes inputs (``pos``, ``adj``, mask_one fields, as in CLRS's ``probing``
module), shared by every algorithm."""

from __future__ import annotations

import numpy as np


def positions(n: int) -> np.ndarray:
    """CLRS's ``pos`` input: ``i / n`` for every node."""
    return np.arange(n, dtype=np.float64) / n


def mask_one(i: int, n: int) -> np.ndarray:
    """A CLRS mask_one field: one-hot [n] at node ``i`` (float64)."""
    out = np.zeros(n, dtype=np.float64)
    out[i] = 1.0
    return out


def adjacency(A: np.ndarray) -> np.ndarray:
    """CLRS's ``adj`` input: ``A != 0`` with self-loops added (``A + I != 0``)."""
    return ((A + np.eye(A.shape[0])) != 0).astype(np.float64)

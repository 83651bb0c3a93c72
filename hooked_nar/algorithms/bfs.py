"""Breadth-first search (Moore, 1959), CLRS-exact."""

from __future__ import annotations

import numpy as np
from numba import njit

from hooked_nar.algorithms.registry import GraphConvention, register


@njit(cache=True)
def _bfs(A, s):
    n = A.shape[0]
    reach_h = np.zeros((n + 1, n))
    pi_h = np.zeros((n + 1, n), dtype=np.int64)
    reach = np.zeros(n)
    pi = np.arange(n)
    reach[s] = 1.0
    t = 0
    while True:
        prev = reach.copy()
        reach_h[t] = prev
        pi_h[t] = pi
        t += 1
        for i in range(n):
            if prev[i] == 1.0:
                for j in range(n):
                    if A[i, j] > 0:
                        if pi[j] == j and j != s:
                            pi[j] = i
                        reach[j] = 1.0
        if (reach == prev).all():
            break
    return reach_h[:t], pi_h[:t], pi


@register(
    "bfs",
    graph=GraphConvention(directed=False, acyclic=False, weighted=False, self_loops=True),
    triplet_gmpnn=0.9973,
    trajectory_hint="reach_h",
    prediction_hint=("reach_h", None),
)
def bfs(A: np.ndarray, s: int):
    """BFS on weights ``A`` [n, n] from ``s`` -> ``(hints, outputs)`` in CLRS's names, hints stacked
    [T, ...]. Called by :func:`run`."""
    reach_h, pi_h, pi = _bfs(A, s)
    return {"reach_h": reach_h, "pi_h": pi_h}, {"pi": pi}

"""Shortest paths: Bellman-Ford, Dijkstra, DAG shortest paths and Floyd-Warshall, CLRS-exact.

CLRS semantics matched here (edges are ``A[u, v] != 0`` throughout):

* Bellman-Ford relaxes synchronously from the previous round's ``d``/``msk``, pushes
  the state at the start of every round and stops after the first round in which
  ``d`` did not change (``msk`` is not compared: a node first reached at distance
  exactly 0 does not count as a change). Without a negative cycle reachable from the
  source this happens within n rounds; otherwise CLRS loops forever, and we raise.
* Dijkstra shares Prim's extract-min loop (see :mod:`hooked_nar.algorithms.mst`).
* DAG shortest paths first runs CLRS's iterative DFS topological sort from the
  source only (phase 0), then relaxes the out-edges of every node of the resulting
  list but the last (phase 1), and pushes the final state once more. ``u``, ``v``
  and ``s_last`` keep their last DFS values during phase 1; ``v`` is Python's
  leftover loop variable (``n - 1`` after a scan that found no white neighbour).
* Floyd-Warshall starts from ``D = A`` and ``msk = adj`` (``A + I != 0``), pushes
  the state before each of the n pivots (no final push) and never resets ``D``;
  a negative diagonal afterwards means a negative cycle, and we raise.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from hooked_nar.algorithms.mst import _greedy_tree
from hooked_nar.algorithms.registry import GraphConvention, register

# ---------------------------------------------------------------- Bellman-Ford


@njit(cache=True)
def _bellman_ford(A, s):
    """Returns T = -1 when CLRS's loop would not terminate (negative cycle reachable from s)."""
    n = A.shape[0]
    d_h = np.empty((n, n))
    msk_h = np.empty((n, n))
    pi_h = np.empty((n, n), dtype=np.int64)
    d = np.zeros(n)
    msk = np.zeros(n)
    pi = np.arange(n)
    msk[s] = 1.0
    # Round t computes the best walks of <= t+1 edges. Without a reachable negative cycle
    # round n (t = n - 1) at the latest changes nothing; with one, no round ever does.
    for t in range(n):
        d_h[t] = d
        msk_h[t] = msk
        pi_h[t] = pi
        prev_d = d_h[t]
        prev_msk = msk_h[t]
        for u in range(n):
            if prev_msk[u] == 1.0:
                du = prev_d[u]
                for v in range(n):
                    w = A[u, v]
                    if w != 0.0:
                        if msk[v] == 0.0 or du + w < d[v]:
                            d[v] = du + w
                            pi[v] = u
                        msk[v] = 1.0
        changed = False
        for v in range(n):
            if d[v] != prev_d[v]:
                changed = True
                break
        if not changed:
            return t + 1, d_h, msk_h, pi_h, pi
    return -1, d_h, msk_h, pi_h, pi


@register(
    "bellman_ford",
    graph=GraphConvention(directed=False, acyclic=False, weighted=True, self_loops=True),
    negative_weights=True,
    triplet_gmpnn=0.9739,
)
def bellman_ford(A: np.ndarray, s: int):
    """Bellman-Ford on weights ``A`` [n, n] from ``s`` -> ``(hints, outputs)`` in CLRS's names,
    hints stacked [T, ...]; ValueError on a negative cycle reachable from ``s``. Called by
    :func:`run`."""
    T, d, msk, pi_h, pi = _bellman_ford(A, s)
    if T < 0:
        raise ValueError(
            f"A has a negative cycle reachable from source {s}; Bellman-Ford would never terminate"
        )
    return {"pi_h": pi_h[:T], "d": d[:T], "msk": msk[:T]}, {"pi": pi}


# ---------------------------------------------------------------- Dijkstra


@register(
    "dijkstra",
    graph=GraphConvention(directed=False, acyclic=False, weighted=True, self_loops=True),
    triplet_gmpnn=0.9605,
    trajectory_hint="mark",
    prediction_hint=("mark", None),
)
def dijkstra(A: np.ndarray, s: int):
    """Dijkstra on weights ``A`` [n, n] from ``s`` -> ``(hints, outputs)`` in CLRS's names, hints
    stacked [T, ...]. Called by :func:`run`."""
    pi_h, d, mark, in_queue, u, pi = _greedy_tree(A, s, True)
    return {"pi_h": pi_h, "d": d, "mark": mark, "in_queue": in_queue, "u": u}, {"pi": pi}


# ---------------------------------------------------------------- DAG shortest paths


@njit(cache=True)
def _dag_push(
    t,
    pi,
    d,
    mark,
    topo,
    topo_head,
    color,
    s_prev,
    u,
    v,
    s_last,
    phase,
    pi_h,
    d_h,
    mark_h,
    topo_h,
    topo_head_h,
    color_h,
    s_prev_h,
    u_h,
    v_h,
    s_last_h,
    phase_h,
):
    pi_h[t] = pi
    d_h[t] = d
    mark_h[t] = mark
    topo_h[t] = topo
    topo_head_h[t, topo_head] = 1.0
    for i in range(color.shape[0]):
        color_h[t, i, color[i]] = 1.0
    s_prev_h[t] = s_prev
    u_h[t, u] = 1.0
    v_h[t, v] = 1.0
    s_last_h[t, s_last] = 1.0
    phase_h[t] = phase


@njit(cache=True)
def _dag_shortest_paths(A, s):
    n = A.shape[0]
    # With r nodes reachable from s: 1 + 1 + (r - 1) + r DFS pushes, then r relaxation pushes.
    cap = 3 * n + 1
    pi_h = np.empty((cap, n), dtype=np.int64)
    d_h = np.empty((cap, n))
    mark_h = np.empty((cap, n))
    topo_h = np.empty((cap, n), dtype=np.int64)
    topo_head_h = np.zeros((cap, n))
    color_h = np.zeros((cap, n, 3))
    s_prev_h = np.empty((cap, n), dtype=np.int64)
    u_h = np.zeros((cap, n))
    v_h = np.zeros((cap, n))
    s_last_h = np.zeros((cap, n))
    phase_h = np.empty(cap)

    pi = np.arange(n)
    d = np.zeros(n)
    mark = np.zeros(n)
    color = np.zeros(n, dtype=np.int64)
    topo = np.arange(n)
    s_prev = np.arange(n)
    topo_head = 0
    s_last = s
    u = s
    v = s
    _dag_push(
        0,
        pi,
        d,
        mark,
        topo,
        topo_head,
        color,
        s_prev,
        u,
        v,
        s_last,
        0.0,
        pi_h,
        d_h,
        mark_h,
        topo_h,
        topo_head_h,
        color_h,
        s_prev_h,
        u_h,
        v_h,
        s_last_h,
        phase_h,
    )
    t = 1
    # Phase 0: CLRS's iterative DFS from s, prepending each finished node to the topo list.
    while True:
        if color[u] == 0:
            color[u] = 1
            _dag_push(
                t,
                pi,
                d,
                mark,
                topo,
                topo_head,
                color,
                s_prev,
                u,
                v,
                s_last,
                0.0,
                pi_h,
                d_h,
                mark_h,
                topo_h,
                topo_head_h,
                color_h,
                s_prev_h,
                u_h,
                v_h,
                s_last_h,
                phase_h,
            )
            t += 1
        for w in range(n):
            v = w  # Python's for-loop variable outlives the loop
            if A[u, w] != 0.0 and color[w] == 0:
                color[w] = 1
                s_prev[w] = s_last
                s_last = w
                _dag_push(
                    t,
                    pi,
                    d,
                    mark,
                    topo,
                    topo_head,
                    color,
                    s_prev,
                    u,
                    v,
                    s_last,
                    0.0,
                    pi_h,
                    d_h,
                    mark_h,
                    topo_h,
                    topo_head_h,
                    color_h,
                    s_prev_h,
                    u_h,
                    v_h,
                    s_last_h,
                    phase_h,
                )
                t += 1
                break
        if s_last == u:
            color[u] = 2
            if color[topo_head] == 2:
                topo[u] = topo_head
            topo_head = u
            _dag_push(
                t,
                pi,
                d,
                mark,
                topo,
                topo_head,
                color,
                s_prev,
                u,
                v,
                s_last,
                0.0,
                pi_h,
                d_h,
                mark_h,
                topo_h,
                topo_head_h,
                color_h,
                s_prev_h,
                u_h,
                v_h,
                s_last_h,
                phase_h,
            )
            t += 1
            if s_prev[u] == u:
                break
            pr = s_prev[s_last]
            s_prev[s_last] = s_last
            s_last = pr
        u = s_last
    # Phase 1: relax out-edges in topological order (topo_head == s here).
    d[topo_head] = 0.0
    mark[topo_head] = 1.0
    while topo[topo_head] != topo_head:
        i = topo_head
        mark[i] = 1.0
        _dag_push(
            t,
            pi,
            d,
            mark,
            topo,
            topo_head,
            color,
            s_prev,
            u,
            v,
            s_last,
            1.0,
            pi_h,
            d_h,
            mark_h,
            topo_h,
            topo_head_h,
            color_h,
            s_prev_h,
            u_h,
            v_h,
            s_last_h,
            phase_h,
        )
        t += 1
        di = d[i]
        for j in range(n):
            w = A[i, j]
            if w != 0.0 and (mark[j] == 0.0 or di + w < d[j]):
                d[j] = di + w
                pi[j] = i
                mark[j] = 1.0
        topo_head = topo[topo_head]
    _dag_push(
        t,
        pi,
        d,
        mark,
        topo,
        topo_head,
        color,
        s_prev,
        u,
        v,
        s_last,
        1.0,
        pi_h,
        d_h,
        mark_h,
        topo_h,
        topo_head_h,
        color_h,
        s_prev_h,
        u_h,
        v_h,
        s_last_h,
        phase_h,
    )
    t += 1
    return (
        pi_h[:t],
        d_h[:t],
        mark_h[:t],
        topo_h[:t],
        topo_head_h[:t],
        color_h[:t],
        s_prev_h[:t],
        u_h[:t],
        v_h[:t],
        s_last_h[:t],
        phase_h[:t],
        pi,
    )


@register(
    "dag_shortest_paths",
    graph=GraphConvention(directed=True, acyclic=True, weighted=True, self_loops=False),
    negative_weights=True,
    dense_pointers=True,
)
def dag_shortest_paths(A: np.ndarray, s: int):
    """DAG shortest paths on weights ``A`` [n, n] from ``s`` -> ``(hints, outputs)`` in CLRS's
    names, hints stacked [T, ...]. Called by :func:`run`."""
    pi_h, d, mark, topo_h, topo_head_h, color, s_prev, u, v, s_last, phase, pi = (
        _dag_shortest_paths(A, s)
    )
    hints = {
        "pi_h": pi_h,
        "d": d,
        "mark": mark,
        "topo_h": topo_h,
        "topo_head_h": topo_head_h,
        "color": color,
        "s_prev": s_prev,
        "u": u,
        "v": v,
        "s_last": s_last,
        "phase": phase,
    }
    return hints, {"pi": pi}


# ---------------------------------------------------------------- Floyd-Warshall


@njit(cache=True)
def _floyd_warshall(A):
    n = A.shape[0]
    D_h = np.empty((n, n, n))
    msk_h = np.empty((n, n, n))
    Pi_h = np.empty((n, n, n), dtype=np.int64)
    k_h = np.zeros((n, n))
    D = A.copy()
    msk = np.empty((n, n))
    Pi = np.empty((n, n), dtype=np.int64)
    for i in range(n):
        for j in range(n):
            msk[i, j] = 1.0 if A[i, j] + (1.0 if i == j else 0.0) != 0.0 else 0.0
            Pi[i, j] = i
    for k in range(n):
        D_h[k] = D
        msk_h[k] = msk
        Pi_h[k] = Pi
        k_h[k, k] = 1.0
        prev_D = D_h[k]
        prev_msk = msk_h[k]
        for i in range(n):
            if prev_msk[i, k] > 0:
                dik = prev_D[i, k]
                for j in range(n):
                    if prev_msk[k, j] > 0:
                        alt = dik + prev_D[k, j]
                        if msk[i, j] == 0.0 or alt < D[i, j]:
                            D[i, j] = alt
                            Pi[i, j] = Pi[k, j]
                        msk[i, j] = 1.0
    negative_cycle = False
    for i in range(n):
        if D[i, i] < 0.0:
            negative_cycle = True
    return D_h, msk_h, Pi_h, k_h, Pi, negative_cycle


@register(
    "floyd_warshall",
    graph=GraphConvention(directed=False, acyclic=False, weighted=True, self_loops=True),
    negative_weights=True,
)
def floyd_warshall(A: np.ndarray, s: int):
    """Floyd-Warshall on weights ``A`` [n, n] from ``s`` -> ``(hints, outputs)`` in CLRS's names,
    hints stacked [T, ...]; ``s`` is unused, ValueError on a negative cycle. Called by
    :func:`run`."""
    D, msk, Pi_h, k, Pi, negative_cycle = _floyd_warshall(A)
    if negative_cycle:
        raise ValueError("A has a negative cycle; Floyd-Warshall distances are undefined")
    return {"Pi_h": Pi_h, "D": D, "msk": msk, "k": k}, {"Pi": Pi}

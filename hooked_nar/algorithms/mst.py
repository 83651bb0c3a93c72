"""Minimum spanning trees: Kruskal (1956) and Prim (1957), CLRS-exact.

CLRS semantics matched here:

* Kruskal reads only the upper triangle (edges ``A[i, j] > 0`` with ``i < j``) and
  visits them in ascending weight order. CLRS orders them with numpy's unstable
  ``argsort``, whose order among *equal* weights depends on the numpy build and CPU;
  we use the stable order (row-major edge order among ties), which is what numpy
  gives whenever the weights are distinct.
* Kruskal's union-find links the root with the smaller index under the larger one
  and compresses paths by re-pointing every node seen so far (``mask_u`` / ``mask_v``)
  to the newest root. Every ``union`` pushes one hint (phase 1), one per step up
  ``u``'s path (phase 1), one per step up ``v``'s path (phase 2) and a final one
  (phase 0); hint 0 (phase 0) precedes the first union.
* Prim extracts ``argmin(key + (1 - in_queue) * 1e9)`` (lowest index among ties)
  and stops, without pushing, once that node is out of the queue; edges are
  ``A[u, v] != 0``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from hooked_nar.algorithms.registry import GraphConvention, register

# ---------------------------------------------------------------- Kruskal


@njit(cache=True)
def _kruskal_edges(A):
    """Upper-triangle edges ``A[i, j] > 0`` (i < j) in stable ascending weight order."""
    n = A.shape[0]
    m = 0
    for i in range(n):
        for j in range(i + 1, n):
            if A[i, j] > 0:
                m += 1
    eu = np.empty(m, dtype=np.int64)
    ev = np.empty(m, dtype=np.int64)
    w = np.empty(m)
    k = 0
    for i in range(n):
        for j in range(i + 1, n):
            if A[i, j] > 0:
                eu[k] = i
                ev[k] = j
                w[k] = A[i, j]
                k += 1
    order = np.argsort(w, kind="mergesort")
    return eu[order], ev[order]


@njit(cache=True)
def _kruskal_length(n, eu, ev):
    """Number of hint steps Kruskal pushes (a dry run of the union-find)."""
    pi = np.arange(n)
    seen = np.empty(n, dtype=np.int64)
    T = 1
    for e in range(eu.shape[0]):
        T += 2  # the opening and the closing push of the union
        for side in range(2):
            r = eu[e] if side == 0 else ev[e]
            seen[0] = r
            k = 1
            while pi[r] != r:
                r = pi[r]
                for q in range(k):
                    pi[seen[q]] = r
                seen[k] = r
                k += 1
                T += 1
            if side == 0:
                ru = r
            else:
                rv = r
        if ru < rv:
            pi[ru] = rv
        elif ru > rv:
            pi[rv] = ru
    return T


@njit(cache=True)
def _kruskal_push(
    t,
    pi,
    tree_a,
    tree_b,
    k,
    u,
    v,
    ru,
    rv,
    mask_u,
    mask_v,
    phase,
    pi_h,
    in_mst_h,
    u_h,
    v_h,
    ru_h,
    rv_h,
    mu_h,
    mv_h,
    phase_h,
):
    """Writes hint step t; ``in_mst_h`` is zero-initialised, so only the k tree edges are set."""
    pi_h[t] = pi
    for q in range(k):
        in_mst_h[t, tree_a[q], tree_b[q]] = 1.0
        in_mst_h[t, tree_b[q], tree_a[q]] = 1.0
    u_h[t, u] = 1.0
    v_h[t, v] = 1.0
    ru_h[t, ru] = 1.0
    rv_h[t, rv] = 1.0
    mu_h[t] = mask_u
    mv_h[t] = mask_v
    phase_h[t, phase] = 1.0


@njit(cache=True)
def _kruskal(eu, ev, pi_h, in_mst_h, u_h, v_h, ru_h, rv_h, mu_h, mv_h, phase_h):
    """Fills the preallocated hint buffers (``_kruskal_length`` steps); returns ``in_mst``."""
    n = pi_h.shape[1]
    pi = np.arange(n)
    in_mst = np.zeros((n, n))
    tree_a = np.empty(n, dtype=np.int64)  # the k edges of in_mst so far
    tree_b = np.empty(n, dtype=np.int64)
    k = 0
    mask_u = np.zeros(n)
    mask_v = np.zeros(n)
    seen_u = np.empty(n, dtype=np.int64)
    seen_v = np.empty(n, dtype=np.int64)
    _kruskal_push(
        0,
        pi,
        tree_a,
        tree_b,
        k,
        0,
        0,
        0,
        0,
        mask_u,
        mask_v,
        0,
        pi_h,
        in_mst_h,
        u_h,
        v_h,
        ru_h,
        rv_h,
        mu_h,
        mv_h,
        phase_h,
    )
    t = 1
    for e in range(eu.shape[0]):
        u = eu[e]
        v = ev[e]
        ru = u
        rv = v
        mask_u[:] = 0.0
        mask_v[:] = 0.0
        mask_u[u] = 1.0
        mask_v[v] = 1.0
        seen_u[0] = u
        seen_v[0] = v
        ku = 1
        kv = 1
        _kruskal_push(
            t,
            pi,
            tree_a,
            tree_b,
            k,
            u,
            v,
            ru,
            rv,
            mask_u,
            mask_v,
            1,
            pi_h,
            in_mst_h,
            u_h,
            v_h,
            ru_h,
            rv_h,
            mu_h,
            mv_h,
            phase_h,
        )
        t += 1
        while pi[ru] != ru:
            ru = pi[ru]
            for q in range(ku):
                pi[seen_u[q]] = ru
            seen_u[ku] = ru
            ku += 1
            mask_u[ru] = 1.0
            _kruskal_push(
                t,
                pi,
                tree_a,
                tree_b,
                k,
                u,
                v,
                ru,
                rv,
                mask_u,
                mask_v,
                1,
                pi_h,
                in_mst_h,
                u_h,
                v_h,
                ru_h,
                rv_h,
                mu_h,
                mv_h,
                phase_h,
            )
            t += 1
        while pi[rv] != rv:
            rv = pi[rv]
            for q in range(kv):
                pi[seen_v[q]] = rv
            seen_v[kv] = rv
            kv += 1
            mask_v[rv] = 1.0
            _kruskal_push(
                t,
                pi,
                tree_a,
                tree_b,
                k,
                u,
                v,
                ru,
                rv,
                mask_u,
                mask_v,
                2,
                pi_h,
                in_mst_h,
                u_h,
                v_h,
                ru_h,
                rv_h,
                mu_h,
                mv_h,
                phase_h,
            )
            t += 1
        if ru != rv:
            in_mst[u, v] = 1.0
            in_mst[v, u] = 1.0
            tree_a[k] = u
            tree_b[k] = v
            k += 1
            if ru < rv:
                pi[ru] = rv
            else:
                pi[rv] = ru
        _kruskal_push(
            t,
            pi,
            tree_a,
            tree_b,
            k,
            u,
            v,
            ru,
            rv,
            mask_u,
            mask_v,
            0,
            pi_h,
            in_mst_h,
            u_h,
            v_h,
            ru_h,
            rv_h,
            mu_h,
            mv_h,
            phase_h,
        )
        t += 1
    return in_mst


@register(
    "mst_kruskal",
    graph=GraphConvention(directed=False, acyclic=False, weighted=True, self_loops=True),
    dense_pointers=True,
)
def mst_kruskal(A: np.ndarray, s: int):
    """Kruskal's MST on weights ``A`` [n, n] from ``s`` -> ``(hints, outputs)`` in CLRS's names,
    hints stacked [T, ...]; ``s`` is unused. Called by :func:`run`."""
    n = A.shape[0]
    eu, ev = _kruskal_edges(A)
    T = _kruskal_length(n, eu, ev)
    # The hint buffers are allocated by numpy, not inside the kernel: in_mst_h alone is
    # T * n * n floats (~130 MB at n = 64, p = 0.5), and numpy backs large arrays with
    # transparent huge pages (about 2x faster to fill here). in_mst_h is zero-filled by
    # the OS; the kernel only writes its (at most 2n - 2) ones per step.
    hints = {
        "in_mst_h": np.zeros((T, n, n)),
        "pi": np.empty((T, n), dtype=np.int64),
        "u": np.zeros((T, n)),
        "v": np.zeros((T, n)),
        "root_u": np.zeros((T, n)),
        "root_v": np.zeros((T, n)),
        "mask_u": np.empty((T, n)),
        "mask_v": np.empty((T, n)),
        "phase": np.zeros((T, 3)),
    }
    in_mst = _kruskal(
        eu,
        ev,
        hints["pi"],
        hints["in_mst_h"],
        hints["u"],
        hints["v"],
        hints["root_u"],
        hints["root_v"],
        hints["mask_u"],
        hints["mask_v"],
        hints["phase"],
    )
    return hints, {"in_mst": in_mst}


# ---------------------------------------------------------------- Prim (and Dijkstra)


@njit(cache=True, inline="always")
def _extract_min(key, in_queue):
    """CLRS's ``argsort(key + (1 - in_queue) * 1e9)[0]``, lowest index among ties."""
    best = 0
    best_val = key[0] + (1.0 - in_queue[0]) * 1e9
    for i in range(1, key.shape[0]):
        val = key[i] + (1.0 - in_queue[i]) * 1e9
        if val < best_val:
            best_val = val
            best = i
    return best


@njit(cache=True, inline="always")
def _record_greedy(t, pi, key, mark, in_queue, u, pi_h, key_h, mark_h, in_queue_h, u_h):
    """Write hint step ``t`` (plain loops: faster than numba's slice assignment)."""
    for i in range(pi.shape[0]):
        pi_h[t, i] = pi[i]
        key_h[t, i] = key[i]
        mark_h[t, i] = mark[i]
        in_queue_h[t, i] = in_queue[i]
    u_h[t, u] = 1.0


@njit(cache=True)
def _greedy_tree(A, s, path_lengths):
    """Prim (``path_lengths=False``: key = edge weight) or Dijkstra (key = d[u] + weight).

    Both push the state before the loop and after every extraction (T <= n + 1).
    """
    n = A.shape[0]
    pi_h = np.empty((n + 1, n), dtype=np.int64)
    key_h = np.empty((n + 1, n))
    mark_h = np.empty((n + 1, n))
    in_queue_h = np.empty((n + 1, n))
    u_h = np.zeros((n + 1, n))
    key = np.zeros(n)
    mark = np.zeros(n)
    in_queue = np.zeros(n)
    pi = np.arange(n)
    in_queue[s] = 1.0
    _record_greedy(0, pi, key, mark, in_queue, s, pi_h, key_h, mark_h, in_queue_h, u_h)
    t = 1
    for _ in range(n):
        u = _extract_min(key, in_queue)
        if in_queue[u] == 0.0:
            break
        mark[u] = 1.0
        in_queue[u] = 0.0
        base = key[u] if path_lengths else 0.0
        for v in range(n):
            w = A[u, v]
            if w != 0.0 and mark[v] == 0.0 and (in_queue[v] == 0.0 or base + w < key[v]):
                pi[v] = u
                key[v] = base + w
                in_queue[v] = 1.0
        _record_greedy(t, pi, key, mark, in_queue, u, pi_h, key_h, mark_h, in_queue_h, u_h)
        t += 1
    return pi_h[:t], key_h[:t], mark_h[:t], in_queue_h[:t], u_h[:t], pi


@register(
    "mst_prim",
    graph=GraphConvention(directed=False, acyclic=False, weighted=True, self_loops=True),
    triplet_gmpnn=0.8639,
    trajectory_hint="mark",
    prediction_hint=("mark", None),
)
def mst_prim(A: np.ndarray, s: int):
    """Prim's MST on weights ``A`` [n, n] from ``s`` -> ``(hints, outputs)`` in CLRS's names, hints
    stacked [T, ...]. Called by :func:`run`."""
    pi_h, key, mark, in_queue, u, pi = _greedy_tree(A, s, False)
    return {"pi_h": pi_h, "key": key, "mark": mark, "in_queue": in_queue, "u": u}, {"pi": pi}

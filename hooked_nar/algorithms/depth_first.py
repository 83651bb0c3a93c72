"""The depth-first family of CLRS-30, CLRS-exact.

``dfs``, ``topological_sort``, ``articulation_points``, ``bridges`` and
``strongly_connected_components`` are all the same iterative depth-first search
with an explicit stack kept as a linked list: ``s_last`` is the top of the stack
and ``s_prev[v]`` the node below ``v`` (``s_prev[v] == v`` at the bottom). Roots are
tried in order ``s = 0 .. n-1`` (in the second pass of Kosaraju's SCC: by
decreasing finishing time). Each iteration of the main loop at node ``u``

1. discovers ``u`` if it is white or has no discovery time yet,
2. scans ``v = 0 .. n-1`` from the start for the first white neighbour, pushes it
   (it turns grey at once) and stops,
3. if nothing was pushed, finishes ``u`` (black) and pops it,

and continues at the new top of the stack. CLRS records a hint after each of these
events and once at the start of every tree. Details the hints expose, replicated here:

* ``v`` is the loop variable of the neighbour scan: after a scan that pushed
  nothing (so in every finish hint) it is ``n - 1``;
* ``time`` grows by ``0.01`` per discovery and per finish, accumulated in float64;
* a pushed node is grey before it is visited, so ``topological_sort`` (which
  discovers only white nodes and keeps no times) discovers only tree roots, and the
  second pass of ``strongly_connected_components`` (whose nodes all kept their
  discovery time from the first pass) re-discovers, i.e. re-times, only its roots;
* ``articulation_points`` and ``bridges`` also record a hint for every non-white
  neighbour other than the parent met during every (re)scan of ``u``, so their
  ``T`` depends on the traversal: their kernel runs once to count ``T`` and once to
  record into buffers of exactly that size.

The kernels write every hint step in full into buffers that are views of one numpy
block per trajectory (see ``_hint_buffers``), one plain loop per field. The recording
helpers are inlined into the dfs, scc and topological-sort kernels (``inline="always"``):
called as functions (each call taking tuples of arrays) they cost several times the
writes themselves (the dfs kernel at n = 64: ~150 us against ~25 us per trajectory).
What remains is mostly first touches of that fresh memory (page faults); numpy backs
blocks of 4 MiB and more with transparent huge pages where the OS allows, which makes
the large trajectories cheaper (one array per hint instead made articulation_points at
n = 64, ~5 MB of hints, several times slower here).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit

from hooked_nar.algorithms.registry import GraphConvention, register
from hooked_nar.algorithms.specs import CATEGORIES, SPECS

_TICK = 0.01  # CLRS's time step (also articulation_points' child-count step)

# What a _dfs_pass does to its pointer array `ptr`:
_PTR_NONE = 0  # nothing (first pass of SCC)
_PTR_PARENT = 1  # ptr[child] = parent when the child is pushed (dfs: pi)
_PTR_ROOT = 2  # ptr[u] = root of u's tree on every visit (second pass of SCC: scc_id)

# Hints every variant records, in this order at the head of its buffer tuple H.
_COMMON = ("color", "s_prev", "s", "u", "v", "s_last")


# --------------------------------------------------------------------------- shared helpers


_GROUPS = ("color", "ptr", "node", "graph", "edge")


@functools.cache
def _plan(algorithm: str, fields: tuple[str, ...]) -> tuple[tuple[int, ...], tuple]:
    """Where each hint of ``fields`` lives: ``(count per group, ((group, index), ...))``.

    The hints of one group (one of ``_GROUPS``: a shape and dtype) are stacked into one
    ``[k, T, ...]`` array.
    """
    counts = [0] * len(_GROUPS)
    where = []
    for name in fields:
        spec = SPECS[algorithm][name]
        if spec.type == "categorical":
            assert CATEGORIES[algorithm][name] == 3
            group = "color"
        elif spec.location == "node":
            group = "ptr" if spec.type == "pointer" else "node"
        else:
            assert spec.type != "pointer"
            group = spec.location
        g = _GROUPS.index(group)
        where.append((g, counts[g]))
        counts[g] += 1
    return tuple(counts), tuple(where)


def _hint_buffers(algorithm: str, fields: tuple[str, ...], T: int, n: int) -> tuple:
    """Uninitialised ``[T, ...]`` buffers for the hints ``fields`` (shaped and typed
    by the CLRS spec), all views of one numpy block."""
    (k_color, k_ptr, k_node, k_graph, k_edge), where = _plan(algorithm, fields)
    shapes = ((k_color, T, n, 3), (k_ptr, T, n), (k_node, T, n), (k_graph, T), (k_edge, T, n, n))
    sizes = [math.prod(shape) for shape in shapes]
    block = np.empty(sum(sizes))
    groups, offset = [], 0
    for g, (shape, size) in enumerate(zip(shapes, sizes, strict=True)):
        chunk = block[offset : offset + size]
        groups.append((chunk.view(np.int64) if g == 1 else chunk).reshape(shape))
        offset += size
    return tuple(groups[g][i] for g, i in where)


def _hints(fields: tuple[str, ...], H: tuple, T: int) -> dict[str, np.ndarray]:
    """The first ``T`` steps of the buffers ``H``, by name."""
    if H and H[0].shape[0] == T:
        return dict(zip(fields, H, strict=True))
    return {name: buf[:T] for name, buf in zip(fields, H, strict=True)}


@njit(cache=True, inline="always")
def _copy_row(out, t, state):
    """``out[t] = state``."""
    for i in range(state.shape[0]):
        out[t, i] = state[i]


@njit(cache=True, inline="always")
def _one_hot_row(out, t, hot):
    """``out[t]`` = CLRS's mask_one of node ``hot``."""
    for i in range(out.shape[1]):
        out[t, i] = 0.0
    out[t, hot] = 1.0


@njit(cache=True, inline="always")
def _push_common(H, t, color, s_prev, s, u, v, s_last):
    """Record step ``t`` of the ``_COMMON`` hints, ``H[:6]``."""
    color_h = H[0]
    for i in range(color.shape[0]):
        color_h[t, i, 0] = 0.0
        color_h[t, i, 1] = 0.0
        color_h[t, i, 2] = 0.0
    for i in range(color.shape[0]):
        color_h[t, i, color[i]] = 1.0
    _copy_row(H[1], t, s_prev)
    _one_hot_row(H[2], t, s)
    _one_hot_row(H[3], t, u)
    _one_hot_row(H[4], t, v)
    _one_hot_row(H[5], t, s_last)


@njit(cache=True, inline="always")
def _pop(s_prev, s_last):
    """Pop the top ``s_last`` off the ``s_prev`` stack; return the new top."""
    below = s_prev[s_last]
    s_prev[s_last] = s_last
    return below


# --------------------------------------------------------------------------- dfs, scc
# H: buffers of (*_COMMON, ptr_h, d, f, time)
# X = (color, s_prev, ptr, d, f): the state they record; ptr is pi (dfs) or scc_id (scc)


@njit(cache=True, inline="always")
def _record_dfs(H, t, X, s, u, v, s_last, time):
    color, s_prev, ptr, d, f = X
    _push_common(H, t, color, s_prev, s, u, v, s_last)
    _copy_row(H[6], t, ptr)
    _copy_row(H[7], t, d)
    _copy_row(H[8], t, f)
    H[9][t] = time
    return t + 1


@njit(cache=True)
def _dfs_pass(M, roots, ptr_mode, H, X, time, t):
    """One DFS over the graph ``M`` trying roots in the order ``roots``; records from step ``t``.

    ``ptr_mode`` says what happens to ``ptr``; returns the new ``(time, t)``.
    """
    n = M.shape[0]
    color, s_prev, ptr, d, f = X
    for s in roots:
        if color[s] != 0:
            continue
        s_last = u = v = s
        t = _record_dfs(H, t, X, s, u, v, s_last, time)  # start of a tree
        while True:
            if ptr_mode == _PTR_ROOT:
                ptr[u] = s
            if color[u] == 0 or d[u] == 0.0:  # discover u
                time += _TICK
                d[u] = time
                color[u] = 1
                t = _record_dfs(H, t, X, s, u, v, s_last, time)
            for w in range(n):  # push the first white neighbour
                v = w
                if M[u, w] != 0 and color[w] == 0:
                    if ptr_mode == _PTR_PARENT:
                        ptr[w] = u
                    color[w] = 1
                    s_prev[w] = s_last
                    s_last = w
                    t = _record_dfs(H, t, X, s, u, v, s_last, time)
                    break
            if s_last == u:  # nothing pushed: finish u
                color[u] = 2
                time += _TICK
                f[u] = time
                t = _record_dfs(H, t, X, s, u, v, s_last, time)
                if s_prev[u] == u:
                    break
                s_last = _pop(s_prev, s_last)
            u = s_last
    return time, t


@njit(cache=True)
def _dfs(A, H):
    n = A.shape[0]
    pi = np.arange(n)
    X = (np.zeros(n, np.int64), np.arange(n), pi, np.zeros(n), np.zeros(n))
    _, t = _dfs_pass(A, np.arange(n), _PTR_PARENT, H, X, 0.0, 0)
    return t, pi


_DFS_FIELDS = (*_COMMON, "pi_h", "d", "f", "time")


@register(
    "dfs",
    graph=GraphConvention(directed=True, acyclic=False, weighted=False, self_loops=True),
    triplet_gmpnn=0.4779,
    trajectory_hint="color",
    prediction_hint=("color", "black"),
)
def dfs(A: np.ndarray, s: int):
    """DFS on weights ``A`` [n, n] from ``s`` -> ``(hints, outputs)`` in CLRS's names, hints stacked
    [T, ...]; ``s`` is unused. Called by :func:`run`."""
    n = A.shape[0]
    # Exactly 3n hints: one per tree start or pushed child (n in all), one discovery
    # and one finish per node.
    H = _hint_buffers("dfs", _DFS_FIELDS, 3 * n, n)
    T, pi = _dfs(A, H)
    return _hints(_DFS_FIELDS, H, T), {"pi": pi}


@njit(cache=True)
def _scc(A, H):
    n = A.shape[0]
    color, scc_id, f = np.zeros(n, np.int64), np.arange(n), np.zeros(n)
    X = (color, np.arange(n), scc_id, np.zeros(n), f)
    time, t1 = _dfs_pass(A, np.arange(n), _PTR_NONE, H, X, 0.0, 0)
    # Finishing times are distinct (time only grows), so the order is unique.
    order = np.argsort(-f)
    color[:] = 0
    X = (color, np.arange(n), scc_id, X[3], f)  # a fresh, empty stack
    _, t = _dfs_pass(np.ascontiguousarray(A.T), order, _PTR_ROOT, H, X, time, t1)
    return t1, t, scc_id


_SCC_FIELDS = (*_COMMON, "scc_id_h", "d", "f", "time")


@register(
    "strongly_connected_components",
    graph=GraphConvention(directed=True, acyclic=False, weighted=False, self_loops=True),
    dense_pointers=True,
)
def strongly_connected_components(A: np.ndarray, s: int):
    """Kosaraju's SCC on weights ``A`` [n, n] from ``s`` -> ``(hints, outputs)`` in CLRS's names,
    hints stacked [T, ...]; ``s`` is unused. Called by :func:`run`."""
    n = A.shape[0]
    # Pass 1 records 3n hints as dfs does; pass 2 re-discovers only its r <= n
    # roots (all nodes keep their discovery time from pass 1): 2n + r hints.
    H = _hint_buffers("strongly_connected_components", _SCC_FIELDS, 6 * n, n)
    T1, T, scc_id = _scc(A, H)
    hints = _hints(_SCC_FIELDS, H, T)
    hints["phase"] = np.zeros(T)
    hints["phase"][T1:] = 1.0
    # CLRS's A_t hint: the transposed graph with self-loops, the same at every step.
    hints["A_t"] = np.empty((T, n, n))
    hints["A_t"][:] = (A.T != 0) | np.eye(n, dtype=bool)
    return hints, {"scc_id": scc_id}


# --------------------------------------------------------------------------- topological sort
# H: buffers of (*_COMMON, topo_h, topo_head_h); X = (color, s_prev, topo)


@njit(cache=True, inline="always")
def _record_topo(H, t, X, s, u, v, s_last, topo_head):
    color, s_prev, topo = X
    _push_common(H, t, color, s_prev, s, u, v, s_last)
    _copy_row(H[6], t, topo)
    _one_hot_row(H[7], t, topo_head)
    return t + 1


@njit(cache=True)
def _topological_sort(A, H):
    n = A.shape[0]
    color, s_prev, topo = np.zeros(n, np.int64), np.arange(n), np.arange(n)
    X = (color, s_prev, topo)
    topo_head = 0
    t = 0
    for s in range(n):
        if color[s] != 0:
            continue
        s_last = u = v = s
        t = _record_topo(H, t, X, s, u, v, s_last, topo_head)  # start of a tree
        while True:
            if color[u] == 0:  # only a root is still white here
                color[u] = 1
                t = _record_topo(H, t, X, s, u, v, s_last, topo_head)
            for w in range(n):  # push the first white neighbour
                v = w
                if A[u, w] != 0 and color[w] == 0:
                    color[w] = 1
                    s_prev[w] = s_last
                    s_last = w
                    t = _record_topo(H, t, X, s, u, v, s_last, topo_head)
                    break
            if s_last == u:  # nothing pushed: finish u and prepend it to the list
                color[u] = 2
                # (The first finished node, the tail, keeps topo[u] == u: topo_head
                # is still 0, which is grey unless it is u itself.)
                if color[topo_head] == 2:
                    topo[u] = topo_head
                topo_head = u
                t = _record_topo(H, t, X, s, u, v, s_last, topo_head)
                if s_prev[u] == u:
                    break
                s_last = _pop(s_prev, s_last)
            u = s_last
    head = np.zeros(n)
    head[topo_head] = 1.0
    return t, topo, head


_TOPO_FIELDS = (*_COMMON, "topo_h", "topo_head_h")


@register(
    "topological_sort",
    graph=GraphConvention(directed=True, acyclic=True, weighted=False, self_loops=False),
    dense_pointers=True,
    triplet_gmpnn=0.8727,
)
def topological_sort(A: np.ndarray, s: int):
    """DFS topological sort on weights ``A`` [n, n] from ``s`` -> ``(hints, outputs)`` in CLRS's
    names, hints stacked [T, ...]; ``s`` is unused. Called by :func:`run`."""
    n = A.shape[0]
    # One hint per tree start, root discovery, pushed child and finish: 2n + r <= 3n.
    H = _hint_buffers("topological_sort", _TOPO_FIELDS, 3 * n, n)
    T, topo, head = _topological_sort(A, H)
    return _hints(_TOPO_FIELDS, H, T), {"topo": topo, "topo_head": head}


# --------------------------------------------------------------------------- articulation points, bridges
# H: buffers of (*_COMMON, pi_h, d, f, low, time, child_cnt, is_cut_h, is_bridge_h); the
#    buffers of the other algorithm's hints are empty (so that both share one kernel type)
# X = (color, s_prev, pi, d, f, low, child_cnt, is_cut, is_bridge)


# Not inlined, unlike the other recorders: its five call sites would each inline ~12
# helpers, doubling the compile time (~10 -> ~18 s) of kernels whose run time is bound by
# their edge hints anyway.
@njit(cache=True)
def _record_low(H, t, X, s, u, v, s_last, time, record, bridges):
    if record:
        color, s_prev, pi, d, f, low, child_cnt, is_cut, is_bridge = X
        _push_common(H, t, color, s_prev, s, u, v, s_last)
        _copy_row(H[6], t, pi)
        _copy_row(H[7], t, d)
        _copy_row(H[8], t, f)
        _copy_row(H[9], t, low)
        H[10][t] = time
        if bridges:
            H[13][t] = is_bridge
        else:
            H[11][t] = child_cnt
            H[12][t] = is_cut
    return t + 1


@njit(cache=True)
def _lowlink(A, bridges, record, H):
    """Tarjan's low-link DFS of articulation points (``bridges=False``) and bridges.

    With ``record=False`` it only counts the hints (``H`` is not touched), returning
    their number as ``t``; with ``record=True`` it records them into ``H``.
    """
    n = A.shape[0]
    color, s_prev, pi = np.zeros(n, np.int64), np.arange(n), np.arange(n)
    d, f, low, child_cnt, is_cut = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    # CLRS's is_bridge: 1 bridge, 0 another edge or a self-loop, -1 (masked) no edge.
    is_bridge = np.empty((n, n) if bridges else (0, 0))
    if bridges:
        for i in range(n):
            for j in range(n):
                is_bridge[i, j] = 0.0 if i == j or A[i, j] != 0 else -1.0
    X = (color, s_prev, pi, d, f, low, child_cnt, is_cut, is_bridge)
    time = 0.0
    t = 0
    for s in range(n):
        if color[s] != 0:
            continue
        s_last = u = v = s
        t = _record_low(H, t, X, s, u, v, s_last, time, record, bridges)  # start of a tree
        while True:
            if color[u] == 0 or d[u] == 0.0:  # discover u
                time += _TICK
                d[u] = time
                low[u] = time
                color[u] = 1
                t = _record_low(H, t, X, s, u, v, s_last, time, record, bridges)
            for w in range(n):
                v = w
                if A[u, w] != 0:
                    if color[w] == 0:  # push the first white neighbour
                        pi[w] = u
                        color[w] = 1
                        s_prev[w] = s_last
                        s_last = w
                        if not bridges:
                            child_cnt[u] += _TICK
                        t = _record_low(H, t, X, s, u, v, s_last, time, record, bridges)
                        break
                    elif w != pi[u]:  # a visited non-parent: recorded on every rescan of u
                        low[u] = min(low[u], d[w])
                        t = _record_low(H, t, X, s, u, v, s_last, time, record, bridges)
            if s_last == u:  # nothing pushed: finish u
                color[u] = 2
                time += _TICK
                f[u] = time
                for w in range(n):  # u's children, and u itself when it is a root
                    if pi[w] == u:
                        low[u] = min(low[u], low[w])
                        if bridges:
                            if low[w] > d[u]:
                                is_bridge[u, w] = 1.0
                                is_bridge[w, u] = 1.0
                        elif pi[u] != u and low[w] >= d[u]:
                            is_cut[u] = 1.0
                if not bridges and pi[u] == u and child_cnt[u] > _TICK:
                    is_cut[u] = 1.0
                t = _record_low(H, t, X, s, u, v, s_last, time, record, bridges)
                if s_prev[u] == u:
                    break
                s_last = _pop(s_prev, s_last)
            u = s_last
    return t, is_cut, is_bridge


_LOW_FIELDS = (*_COMMON, "pi_h", "d", "f", "low", "time")
_ARTICULATION_FIELDS = (*_LOW_FIELDS, "child_cnt", "is_cut_h")
_BRIDGES_FIELDS = (*_LOW_FIELDS, "is_bridge_h")


def _lowlink_run(A, bridges):
    """Count the hints, record them; return ``(hints, is_cut, is_bridge)``."""
    n = A.shape[0]
    algorithm, fields = (
        ("bridges", _BRIDGES_FIELDS) if bridges else ("articulation_points", _ARTICULATION_FIELDS)
    )

    def buffers(T):
        H = _hint_buffers(algorithm, fields, T, n)
        if bridges:
            return H, (*H[:11], np.empty((0, n)), np.empty((0, n)), H[11])
        return H, (*H, np.empty((0, n, n)))

    T, _, _ = _lowlink(A, bridges, False, buffers(0)[1])
    H, H_kernel = buffers(T)
    _, is_cut, is_bridge = _lowlink(A, bridges, True, H_kernel)
    return _hints(fields, H, T), is_cut, is_bridge


@register(
    "articulation_points",
    graph=GraphConvention(directed=False, acyclic=False, weighted=False, self_loops=True),
)
def articulation_points(A: np.ndarray, s: int):
    """articulation points (Tarjan) on weights ``A`` [n, n] from ``s`` -> ``(hints, outputs)`` in
    CLRS's names, hints stacked [T, ...]; ``s`` is unused. Called by :func:`run`."""
    hints, is_cut, _ = _lowlink_run(A, False)
    return hints, {"is_cut": is_cut}


@register(
    "bridges",
    graph=GraphConvention(directed=False, acyclic=False, weighted=False, self_loops=True),
)
def bridges(A: np.ndarray, s: int):
    """bridges (Tarjan) on weights ``A`` [n, n] from ``s`` -> ``(hints, outputs)`` in CLRS's names,
    hints stacked [T, ...]; ``s`` is unused. Called by :func:`run`."""
    hints, _, is_bridge = _lowlink_run(A, True)
    return hints, {"is_bridge": is_bridge}

"""Property tests of the traversal algorithms against networkx on random graphs.

These check what the CLRS outputs mean, not only that they match recorded samples:

* ``bfs``: the last ``reach_h`` is the set reachable from ``s`` (``A[i, j] > 0``),
  and ``pi`` is a BFS tree (reached nodes hang off a neighbour one hop closer to ``s``;
  the source and unreached nodes point to themselves).
* ``dfs``: ``pi`` is a forest of graph edges, and the last ``d``/``f`` obey the
  parenthesis theorem with respect to that forest.
* ``topological_sort``: ``topo`` is a linked list starting at ``topo_head`` whose tail
  points to itself; on a DAG it lists every node once and respects every edge.
* ``strongly_connected_components``: ``scc_id[v]`` is the root of ``v``'s tree in the
  second (transposed) DFS pass, a member of ``v``'s component, so grouping by
  ``scc_id`` is the SCC partition.
* ``bridges``: ``is_bridge`` is an edge mask (1 bridge, 0 other edge or diagonal,
  -1 no edge), symmetric; its 1-entries are ``networkx.bridges``.
* ``articulation_points``: ``is_cut`` marks ``networkx.articulation_points``.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hooked_nar.algorithms import run

MAX_NODES = 12
EXAMPLES = 300


@st.composite
def weight_matrices(draw, *, undirected=False, dag=False, self_loops=True):
    """A random weight matrix ``A`` (0 = no edge, positive weights otherwise)."""
    n = draw(st.integers(1, MAX_NODES))
    p = draw(st.sampled_from([0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    A = np.where(rng.random((n, n)) < p, rng.uniform(0.1, 1.0, (n, n)), 0.0)
    if not self_loops or dag:
        np.fill_diagonal(A, 0.0)
    if dag:  # edges go forward in a random order of the nodes
        order = rng.permutation(n)
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        A = np.where(rank[:, None] < rank[None, :], A, 0.0)
    if undirected:
        A = np.triu(A) + np.triu(A, 1).T
    return A


def digraph(A: np.ndarray) -> nx.DiGraph:
    G = nx.DiGraph()
    G.add_nodes_from(range(A.shape[0]))
    G.add_edges_from(zip(*np.nonzero(A), strict=True))
    return G


def graph(A: np.ndarray) -> nx.Graph:
    G = nx.Graph()
    G.add_nodes_from(range(A.shape[0]))
    G.add_edges_from((u, v) for u, v in zip(*np.nonzero(A), strict=True) if u != v)
    return G


@settings(max_examples=EXAMPLES, deadline=None)
@given(A=weight_matrices(), undirected=st.booleans(), data=st.data())
def test_bfs_reach_and_tree(A, undirected, data):
    if undirected:
        A = np.triu(A) + np.triu(A, 1).T
    n = A.shape[0]
    s = data.draw(st.integers(0, n - 1), label="s")
    traj = run("bfs", A, source=s)
    reach, pi = traj.hints["reach_h"][-1], traj.outputs["pi"]
    dist = nx.single_source_shortest_path_length(digraph(A > 0), s)
    assert set(np.flatnonzero(reach == 1.0)) == set(dist)
    assert set(np.unique(reach)) <= {0.0, 1.0}
    for v in range(n):
        if v == s or v not in dist:
            assert pi[v] == v
        else:
            u = int(pi[v])
            assert u in dist and A[u, v] > 0 and dist[u] == dist[v] - 1


def _forest_ancestors(pi: np.ndarray) -> list[set[int]]:
    """Proper ancestors of every node in the pointer forest ``pi`` (asserting it is acyclic)."""
    n = len(pi)
    ancestors = []
    for v in range(n):
        seen, x = set(), v
        while pi[x] != x:
            x = int(pi[x])
            assert x not in seen and len(seen) < n, "pi has a cycle"
            seen.add(x)
        ancestors.append(seen)
    return ancestors


@settings(max_examples=EXAMPLES, deadline=None)
@given(A=weight_matrices(), undirected=st.booleans())
def test_dfs_forest_and_parenthesis(A, undirected):
    if undirected:
        A = np.triu(A) + np.triu(A, 1).T
    n = A.shape[0]
    traj = run("dfs", A)
    pi, d, f = traj.outputs["pi"], traj.hints["d"][-1], traj.hints["f"][-1]
    assert (traj.hints["color"][-1, :, 2] == 1.0).all()  # every node finished
    ancestors = _forest_ancestors(pi)
    for v in range(n):
        if pi[v] != v:
            assert A[pi[v], v] != 0
        assert 0 < d[v] < f[v]
    for u in range(n):
        for v in range(n):
            if u == v:
                continue
            if u in ancestors[v]:  # v is a proper descendant of u: nested intervals
                assert d[u] < d[v] < f[v] < f[u]
            elif v not in ancestors[u]:  # unrelated: disjoint intervals
                assert f[u] < d[v] or f[v] < d[u]
            if A[u, v] != 0:  # every out-neighbour is discovered before u finishes
                assert d[v] < f[u]


def _linked_list(head: int, nxt: np.ndarray) -> list[int]:
    order = [head]
    while nxt[order[-1]] != order[-1]:
        order.append(int(nxt[order[-1]]))
        assert len(order) <= len(nxt), "topo has a cycle"
    return order


@settings(max_examples=EXAMPLES, deadline=None)
@given(A=weight_matrices(dag=True))
def test_topological_sort_is_a_topological_order(A):
    n = A.shape[0]
    traj = run("topological_sort", A)
    head = traj.outputs["topo_head"]
    assert head.sum() == 1.0
    order = _linked_list(int(np.argmax(head)), traj.outputs["topo"])
    assert sorted(order) == list(range(n))
    rank = {v: i for i, v in enumerate(order)}
    for u, v in zip(*np.nonzero(A), strict=True):
        assert rank[u] < rank[v]


@settings(max_examples=EXAMPLES, deadline=None)
@given(A=weight_matrices())
def test_scc_partition(A):
    scc_id = run("strongly_connected_components", A).outputs["scc_id"]
    groups: dict[int, set[int]] = {}
    for v, root in enumerate(scc_id):
        groups.setdefault(int(root), set()).add(v)
    assert all(root in members for root, members in groups.items())  # ids are members
    expected = {frozenset(c) for c in nx.strongly_connected_components(digraph(A))}
    assert {frozenset(g) for g in groups.values()} == expected


@settings(max_examples=EXAMPLES, deadline=None)
@given(A=weight_matrices(undirected=True))
def test_bridges(A):
    n = A.shape[0]
    is_bridge = run("bridges", A).outputs["is_bridge"]
    adj = (A != 0) | np.eye(n, dtype=bool)
    np.testing.assert_array_equal(is_bridge == -1.0, ~adj)
    np.testing.assert_array_equal(is_bridge, is_bridge.T)
    assert (np.diag(is_bridge) == 0.0).all()
    ours = {frozenset((int(u), int(v))) for u, v in zip(*np.nonzero(is_bridge == 1.0), strict=True)}
    assert ours == {frozenset(e) for e in nx.bridges(graph(A))}


@settings(max_examples=EXAMPLES, deadline=None)
@given(A=weight_matrices(undirected=True))
def test_articulation_points(A):
    is_cut = run("articulation_points", A).outputs["is_cut"]
    assert set(np.unique(is_cut)) <= {0.0, 1.0}
    assert set(np.flatnonzero(is_cut == 1.0)) == set(nx.articulation_points(graph(A)))

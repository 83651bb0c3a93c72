"""Weighted-graph algorithms compute correct results: property tests against networkx."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hooked_nar.algorithms import run

SETTINGS = settings(max_examples=100, deadline=None)
TOL = {"rel": 1e-9, "abs": 1e-9}


@st.composite
def weight_matrices(draw, kind="directed", negative=False, min_n=1):
    """Random weighted ER-style graphs: n in min_n..12, edge density p, weights in [0.1, 10].

    kind: "directed", "undirected" (symmetric) or "dag" (edges follow a random order).
    negative: also draw weights in [-10, -0.1].
    """
    n = draw(st.integers(min_n, 12))
    p = draw(st.floats(0.0, 1.0))
    u = draw(arrays(np.float64, (n, n), elements=st.floats(0.0, 1.0)))
    w = draw(arrays(np.float64, (n, n), elements=st.floats(0.1, 10.0)))
    if negative:
        sign = draw(arrays(np.bool_, (n, n)))
        w = np.where(sign, -w, w)
    A = np.where(u < p, w, 0.0)
    if kind == "undirected":
        A = np.triu(A, 1)
        A = A + A.T
    elif kind == "dag":
        order = np.array(draw(st.permutations(range(n))))
        A = np.where(order[:, None] < order[None, :], A, 0.0)
    s = draw(st.integers(0, n - 1))
    return A, s


def _digraph(A: np.ndarray) -> nx.DiGraph:
    G = nx.DiGraph()
    G.add_nodes_from(range(A.shape[0]))
    for i, j in zip(*np.nonzero(A), strict=True):
        G.add_edge(int(i), int(j), weight=float(A[i, j]))
    return G


def _graph(A: np.ndarray) -> nx.Graph:
    G = nx.Graph()
    G.add_nodes_from(range(A.shape[0]))
    for i, j in zip(*np.nonzero(np.triu(A, 1)), strict=True):
        G.add_edge(int(i), int(j), weight=float(A[i, j]))
    return G


def _assert_shortest_path_tree(A, s, d, pi, dist):
    """``d`` equals ``dist`` on the reachable nodes and ``pi`` is a shortest-path tree rooted at s."""
    n = A.shape[0]
    assert pi[s] == s
    for v in range(n):
        if v not in dist:
            assert pi[v] == v, f"unreachable node {v} has a parent"
            continue
        assert d[v] == pytest.approx(dist[v], **TOL), f"d[{v}]"
        if v == s:
            continue
        p = pi[v]
        assert p != v and p in dist and A[p, v] != 0, f"pi[{v}]={p} is not a tree edge"
        assert d[p] + A[p, v] == pytest.approx(d[v], **TOL), f"edge {p}->{v} is not tight"
        # Following the parents reaches s without a cycle.
        x, steps = v, 0
        while x != s:
            x = pi[x]
            steps += 1
            assert steps < n, f"pi has a cycle through {v}"


@SETTINGS
@given(weight_matrices())
def test_dijkstra_matches_networkx(graph):
    A, s = graph
    traj = run("dijkstra", A, s)
    dist = nx.single_source_dijkstra_path_length(_digraph(A), s)
    _assert_shortest_path_tree(A, s, traj.hints["d"][-1], traj.outputs["pi"], dist)
    # Every reachable node is extracted exactly once, after the initial step.
    assert traj.length == len(dist) + 1
    assert traj.hints["mark"][-1].sum() == len(dist)


@SETTINGS
@given(weight_matrices())
def test_bellman_ford_matches_networkx(graph):
    A, s = graph
    traj = run("bellman_ford", A, s)
    dist = nx.single_source_dijkstra_path_length(_digraph(A), s)
    _assert_shortest_path_tree(A, s, traj.hints["d"][-1], traj.outputs["pi"], dist)
    assert traj.length <= A.shape[0]
    np.testing.assert_array_equal(traj.hints["msk"][-1], [float(v in dist) for v in range(len(A))])


@SETTINGS
@given(weight_matrices(kind="dag", negative=True))
def test_dag_shortest_paths_matches_networkx(graph):
    A, s = graph
    traj = run("dag_shortest_paths", A, s)
    dist = nx.single_source_bellman_ford_path_length(_digraph(A), s)
    _assert_shortest_path_tree(A, s, traj.hints["d"][-1], traj.outputs["pi"], dist)
    # The topological list built in phase 0 starts at s and lists exactly the reachable nodes.
    topo = traj.hints["topo_h"][-1]
    order, x = [s], s
    while topo[x] != x:
        x = topo[x]
        order.append(x)
    assert sorted(order) == sorted(dist)
    position = {v: i for i, v in enumerate(order)}
    for u in order:
        for v in np.nonzero(A[u])[0]:
            assert position[u] < position[int(v)], f"edge {u}->{v} against the topological order"


@SETTINGS
@given(weight_matrices())
def test_floyd_warshall_matches_networkx(graph):
    A, _ = graph
    n = A.shape[0]
    # CLRS pushes D before each pivot only; an isolated extra last node makes the last hint final.
    padded = np.zeros((n + 1, n + 1))
    padded[:n, :n] = A
    traj = run("floyd_warshall", padded)
    D, msk, Pi = traj.hints["D"][-1][:n, :n], traj.hints["msk"][-1][:n, :n], traj.outputs["Pi"]
    lengths = dict(nx.all_pairs_dijkstra_path_length(_digraph(A)))
    for i in range(n):
        for j in range(n):
            if i == j:
                if A[i, i] == 0:
                    assert D[i, i] == 0.0 and msk[i, i] == 1.0
                continue
            if j not in lengths[i]:
                assert msk[i, j] == 0.0 and Pi[i, j] == i
                continue
            assert msk[i, j] == 1.0
            assert D[i, j] == pytest.approx(lengths[i][j], **TOL), f"D[{i}, {j}]"
            # Walking Pi back from j reaches i along real edges whose weights sum to D[i, j].
            total, x, steps = 0.0, j, 0
            while x != i:
                p = Pi[i, x]
                assert A[p, x] != 0, f"Pi[{i}, {x}]={p} is not an edge"
                total += A[p, x]
                x = p
                steps += 1
                assert steps < n
            assert total == pytest.approx(lengths[i][j], **TOL)


def _forest_weight(A: np.ndarray, edges) -> float:
    return float(sum(A[u, v] for u, v in edges))


@SETTINGS
@given(weight_matrices(kind="undirected"))
def test_mst_kruskal_matches_networkx(graph):
    A, _ = graph
    traj = run("mst_kruskal", A)
    in_mst = traj.outputs["in_mst"]
    np.testing.assert_array_equal(in_mst, in_mst.T)
    edges = list(zip(*np.nonzero(np.triu(in_mst, 1)), strict=True))
    G = _graph(A)
    forest = nx.minimum_spanning_tree(G)
    # A spanning forest: one edge fewer than nodes per component, and acyclic.
    assert len(edges) == A.shape[0] - nx.number_connected_components(G)
    chosen = nx.Graph(edges)
    assert nx.is_forest(chosen) if edges else True
    assert all(A[u, v] > 0 for u, v in edges)
    assert _forest_weight(A, edges) == pytest.approx(forest.size(weight="weight"), **TOL)
    np.testing.assert_array_equal(traj.hints["in_mst_h"][-1], in_mst)


@SETTINGS
@given(weight_matrices(kind="undirected"))
def test_mst_prim_matches_networkx(graph):
    A, s = graph
    traj = run("mst_prim", A, s)
    pi = traj.outputs["pi"]
    G = _graph(A)
    component = nx.node_connected_component(G, s)
    assert pi[s] == s
    assert {v for v in range(len(A)) if pi[v] != v} == component - {s}
    edges = [(int(pi[v]), v) for v in component if v != s]
    assert all(A[u, v] > 0 for u, v in edges)
    tree = nx.Graph(edges)
    tree.add_node(s)
    assert nx.is_tree(tree) and set(tree) == component
    best = nx.minimum_spanning_tree(G.subgraph(component))
    assert _forest_weight(A, edges) == pytest.approx(best.size(weight="weight"), **TOL)


@SETTINGS
@given(weight_matrices(min_n=2), st.floats(0.1, 10.0), st.floats(0.1, 5.0), st.data())
def test_negative_cycle_raises(graph, w, slack, data):
    A, s = graph
    a = data.draw(st.integers(0, A.shape[0] - 1).filter(lambda x: x != s))
    A = A.copy()
    A[s, a] = w
    A[a, s] = -(w + slack)  # s -> a -> s weighs -slack
    with pytest.raises(ValueError, match="A has a negative cycle"):
        run("bellman_ford", A, s)
    with pytest.raises(ValueError, match="A has a negative cycle"):
        run("floyd_warshall", A)


def test_negative_self_loop_raises():
    for name, source in (("bellman_ford", 0), ("floyd_warshall", None)):
        with pytest.raises(ValueError, match="A has a negative cycle"):
            run(name, np.array([[-1.0]]), source)


def test_bellman_ford_ignores_negative_cycle_unreachable_from_source():
    A = np.zeros((4, 4))
    A[0, 1] = 2.0
    A[2, 3] = 1.0
    A[3, 2] = -3.0  # negative cycle 2 <-> 3, unreachable from 0: CLRS terminates
    traj = run("bellman_ford", A, 0)
    np.testing.assert_array_equal(traj.outputs["pi"], [0, 0, 2, 3])
    np.testing.assert_allclose(traj.hints["d"][-1], [0.0, 2.0, 0.0, 0.0])


def test_bellman_ford_stops_when_d_is_unchanged():
    # CLRS compares only d between rounds: node 2 is first reached at distance exactly 0,
    # so the round that reaches it counts as "no change" and node 3 is never reached.
    A = np.zeros((4, 4))
    A[0, 1], A[1, 2], A[2, 3] = 1.0, -1.0, 5.0
    traj = run("bellman_ford", A, 0)
    assert traj.length == 2
    np.testing.assert_array_equal(traj.outputs["pi"], [0, 0, 1, 3])


@pytest.mark.parametrize("name", ["dijkstra", "mst_prim", "mst_kruskal"])
def test_negative_weights_rejected(name):
    A = np.array([[0.0, -1.0], [-1.0, 0.0]])
    with pytest.raises(ValueError, match="negative weights"):
        run(name, A, None if name == "mst_kruskal" else 0)

"""Counterfactual graphs: one minimal edit, same node set, ground truth recomputed (checked
against networkx), edits that change the answer whenever one exists, seeded choices."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hooked_nar.algorithms import run
from hooked_nar.data import CLRSDataset, collate, data_to_trajectory, trajectory_to_data
from patching.counterfactuals import make_counterfactual

SETTINGS = settings(max_examples=25, deadline=None)


@st.composite
def undirected_graphs(draw, weighted: bool):
    """A symmetric weight matrix (n in 3..9, random self-loops) and a source node."""
    n = draw(st.integers(3, 9))
    p = draw(st.sampled_from([0.2, 0.35, 0.5, 0.8]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    upper = np.triu(rng.random((n, n)) < p)
    w = rng.uniform(0.05, 1.0, (n, n)) if weighted else np.ones((n, n))
    A = np.where(upper, w, 0.0)
    A = np.triu(A) + np.triu(A, 1).T
    return A, draw(st.integers(0, n - 1))


def _dense(data) -> np.ndarray:
    return data_to_trajectory(data).inputs["A"]


def _source(data) -> int:
    return int(data.s.argmax())


def _nx(A: np.ndarray) -> nx.Graph:
    G = nx.Graph()
    G.add_nodes_from(range(A.shape[0]))
    for i, j in zip(*np.nonzero(np.triu(A, 1)), strict=True):
        G.add_edge(int(i), int(j), weight=float(A[i, j]))
    return G


def _check_bfs_tree(A: np.ndarray, s: int, data) -> None:
    dist = nx.single_source_shortest_path_length(_nx(A), s)
    reach = data.reach_h[:, int(data.length) - 1]
    assert set(torch.nonzero(reach == 1).flatten().tolist()) == set(dist)
    for v in range(A.shape[0]):
        p = int(data.pi[v])
        if v == s or v not in dist:
            assert p == v
        else:
            assert A[p, v] > 0 and dist[p] == dist[v] - 1


def _changes(alg: str, A: np.ndarray, s: int, edits) -> bool:
    """Whether any of the (A', s') edits changes the algorithm's outputs."""
    base = run(alg, A, s).outputs
    for A2, s2 in edits:
        out = run(alg, A2, s2).outputs
        if any(not np.array_equal(base[k], out[k]) for k in base):
            return True
    return False


@SETTINGS
@given(graph=undirected_graphs(weighted=False), seed=st.integers(0, 5))
def test_move_source_recomputes_bfs_and_changes_the_answer_when_it_can(graph, seed):
    A, s = graph
    data = trajectory_to_data(run("bfs", A, s))
    cf = make_counterfactual(data, "move_source", seed=seed)
    new = cf.edit["source"][1]
    assert cf.edit["source"][0] == s and new != s and _source(cf.corrupted) == new
    assert cf.clean is data and cf.corrupted.num_nodes == data.num_nodes
    assert torch.equal(cf.corrupted.edge_index, data.edge_index)
    assert torch.equal(cf.corrupted.A, data.A) and torch.equal(cf.corrupted.pos, data.pos)
    _check_bfs_tree(A, new, cf.corrupted)
    n = A.shape[0]
    possible = _changes("bfs", A, s, [(A, v) for v in range(n) if v != s])
    assert cf.changed_output == possible
    assert cf.changed_nodes.tolist() == (cf.corrupted.pi != data.pi).tolist()


@SETTINGS
@given(graph=undirected_graphs(weighted=False), seed=st.integers(0, 5))
def test_remove_edge_deletes_both_directions_and_recomputes_bfs(graph, seed):
    A, s = graph
    data = trajectory_to_data(run("bfs", A, s))
    edges = [(i, j) for i, j in zip(*np.nonzero(np.triu(A, 1)), strict=True)]
    if not edges:
        with pytest.raises(ValueError, match="no edge"):
            make_counterfactual(data, "remove_edge", seed=seed)
        return
    cf = make_counterfactual(data, "remove_edge", seed=seed)
    i, j = cf.edit["edge"]
    B = _dense(cf.corrupted)
    assert B[i, j] == 0 and B[j, i] == 0 and np.array_equal(B, B.T)
    expected = A.copy()
    expected[i, j] = expected[j, i] = 0.0
    assert np.array_equal(B, expected)
    assert cf.corrupted.num_nodes == data.num_nodes
    assert cf.corrupted.edge_index.shape[1] == data.edge_index.shape[1] - 2
    assert _source(cf.corrupted) == s
    _check_bfs_tree(B, s, cf.corrupted)
    candidates = []
    for a, b in edges:
        C = A.copy()
        C[a, b] = C[b, a] = 0.0
        candidates.append((C, s))
    assert cf.changed_output == _changes("bfs", A, s, candidates)


@SETTINGS
@given(graph=undirected_graphs(weighted=True), seed=st.integers(0, 5))
def test_perturb_weight_changes_one_symmetric_weight_and_recomputes_dijkstra(graph, seed):
    A, s = graph
    data = trajectory_to_data(run("dijkstra", A, s))
    if not np.triu(A, 1).any():
        with pytest.raises(ValueError, match="no edge"):
            make_counterfactual(data, "perturb_weight", seed=seed)
        return
    cf = make_counterfactual(data, "perturb_weight", seed=seed)
    i, j = cf.edit["edge"]
    old, new = cf.edit["weight"]
    B, A32 = _dense(cf.corrupted), _dense(data)
    assert B[i, j] == B[j, i] == pytest.approx(new) and A32[i, j] == pytest.approx(old)
    assert new > 0 and new != old
    diff = np.argwhere(B != A32)
    assert {tuple(x) for x in diff.tolist()} == {(i, j), (j, i)}
    assert torch.equal(cf.corrupted.edge_index, data.edge_index)
    # the recomputed distances and tree are Dijkstra's on the edited weights
    dist = nx.single_source_dijkstra_path_length(_nx(B), s)
    d = cf.corrupted.d[:, int(cf.corrupted.length) - 1]
    pi = cf.corrupted.pi
    for v in range(B.shape[0]):
        if v in dist:
            assert float(d[v]) == pytest.approx(dist[v], rel=1e-5, abs=1e-5)
            if v != s:
                p = int(pi[v])
                assert dist[v] == pytest.approx(dist[p] + B[p, v], rel=1e-5, abs=1e-5)
        else:
            assert int(pi[v]) == v


def test_kinds_that_make_no_sense_are_refused_clearly():
    bfs = CLRSDataset("bfs", 1, sizes=(6,), seed=0, progress=False)[0]
    with pytest.raises(ValueError, match="unweighted"):
        make_counterfactual(bfs, "perturb_weight")
    with pytest.raises(ValueError, match="kind"):
        make_counterfactual(bfs, "flip_coin")
    dfs = CLRSDataset("dfs", 1, sizes=(6,), seed=0, progress=False)[0]
    with pytest.raises(ValueError, match="source"):
        make_counterfactual(dfs, "move_source")
    with pytest.raises(TypeError, match="one graph"):
        make_counterfactual(collate([bfs, bfs]), "move_source")
    with pytest.raises(ValueError, match="source"):
        make_counterfactual(bfs, "move_source", source=_source(bfs))
    with pytest.raises(ValueError, match="edge"):
        make_counterfactual(bfs, "remove_edge", edge=(0, 0))


def test_a_given_edit_is_applied_as_asked():
    data = CLRSDataset("dijkstra", 1, sizes=(8,), seed=3, progress=False)[0]
    A = _dense(data)
    i, j = next((int(a), int(b)) for a, b in zip(*np.nonzero(np.triu(A, 1)), strict=True))
    cf = make_counterfactual(data, "perturb_weight", edge=(j, i), weight=0.5)
    assert cf.edit["edge"] == [i, j] and cf.edit["weight"][1] == 0.5
    B = _dense(cf.corrupted)
    assert B[i, j] == B[j, i] == 0.5
    target = (_source(data) + 1) % 8
    assert _source(make_counterfactual(data, "move_source", source=target).corrupted) == target


def test_the_same_seed_gives_the_same_edit_and_seeds_vary_it():
    data = CLRSDataset("mst_prim", 1, sizes=(12,), seed=1, progress=False)[0]
    edits = [make_counterfactual(data, "perturb_weight", seed=k).edit for k in range(6)]
    assert make_counterfactual(data, "perturb_weight", seed=2).edit == edits[2]
    assert len({(tuple(e["edge"]), e["weight"][1]) for e in edits}) > 1
    assert all(e["changed_output"] for e in edits)
    # the corrupted graph batches with the clean one (no dict attribute on Data)
    batch = collate([data, make_counterfactual(data, "remove_edge", seed=0).corrupted])
    assert batch.num_graphs == 2

"""Concept labels: hand-worked values, step alignment, masking of padded steps, coverage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hooked_nar.algorithms import ALGORITHMS, SPECS, run
from hooked_nar.algorithms.registry import _REGISTRY
from hooked_nar.concept_labels import CONCEPTS, concept_labels, concepts_markdown
from hooked_nar.data import CLRSDataset, collate, trajectory_to_data

T_, F_ = True, False


def _undirected(n: int, edges: list[tuple[int, int]], weights=None) -> np.ndarray:
    A = np.zeros((n, n))
    for k, (i, j) in enumerate(edges):
        A[i, j] = A[j, i] = 1.0 if weights is None else weights[k]
    return A


PATH = _undirected(4, [(0, 1), (1, 2), (2, 3)])  # 0 - 1 - 2 - 3
STAR = _undirected(4, [(0, 1), (0, 2), (0, 3)])  # centre 0
TWO_COMPONENTS = _undirected(4, [(0, 1), (2, 3)])


def _labels(algorithm, A, source=None, state="computed"):
    return concept_labels(trajectory_to_data(run(algorithm, A, source)), state=state)


def _check(labels: dict, expected: dict) -> None:
    for name, want in expected.items():
        got = labels[name]
        want = torch.tensor(want, dtype=got.dtype)
        assert torch.equal(got, want), f"{name}: got {got.tolist()}, expected {want.tolist()}"


# ----------------------------------------------------------------- BFS by hand

# BFS from 0 on the path reaches one more node per step: hints
#   reach_h[0] = {0}, [1] = {0,1}, [2] = {0,1,2}, [3] = {0,1,2,3}  -> T = 4, S = 3.


def test_bfs_path_by_hand():
    computed = _labels("bfs", PATH, 0)
    _check(
        computed,
        {
            "step_mask": [[T_] * 3] * 4,
            "is_source": [[T_, T_, T_], [F_, F_, F_], [F_, F_, F_], [F_, F_, F_]],
            # column t = hint t+1
            "is_visited": [[T_, T_, T_], [T_, T_, T_], [F_, T_, T_], [F_, F_, T_]],
            "is_frontier": [[F_, F_, F_], [T_, F_, F_], [F_, T_, F_], [F_, F_, T_]],
        },
    )
    read = _labels("bfs", PATH, 0, state="read")
    _check(
        read,
        {
            # column t = hint t; the frontier of hint 0 is the source
            "is_visited": [[T_, T_, T_], [F_, T_, T_], [F_, F_, T_], [F_, F_, F_]],
            "is_frontier": [[T_, F_, F_], [F_, T_, F_], [F_, F_, T_], [F_, F_, F_]],
        },
    )


def test_bfs_star_by_hand():
    # from leaf 1: hint 0 = {1}, hint 1 = {1, 0}, hint 2 = everything -> T = 3, S = 2
    computed = _labels("bfs", STAR, 1)
    _check(
        computed,
        {
            "step_mask": [[T_, T_]] * 4,
            "is_source": [[F_, F_], [T_, T_], [F_, F_], [F_, F_]],
            "is_visited": [[T_, T_], [T_, T_], [F_, T_], [F_, T_]],
            "is_frontier": [[T_, F_], [F_, F_], [F_, T_], [F_, T_]],
        },
    )
    read = _labels("bfs", STAR, 1, state="read")
    _check(
        read,
        {
            "is_visited": [[F_, T_], [T_, T_], [F_, F_], [F_, F_]],
            "is_frontier": [[F_, T_], [T_, F_], [F_, F_], [F_, F_]],
        },
    )


def test_bfs_two_components_by_hand():
    # from 2: hint 0 = {2}, hint 1 = {2, 3}, then nothing changes -> T = 2, S = 1;
    # the other component is never visited
    computed = _labels("bfs", TWO_COMPONENTS, 2)
    _check(
        computed,
        {
            "step_mask": [[T_]] * 4,
            "is_source": [[F_], [F_], [T_], [F_]],
            "is_visited": [[F_], [F_], [T_], [T_]],
            "is_frontier": [[F_], [F_], [F_], [T_]],
        },
    )


def test_bfs_batch_pads_and_masks():
    """The three graphs in one batch: T_max = 4, S = 3; padded steps masked and neutral."""
    datas = [
        trajectory_to_data(run("bfs", PATH, 0)),  # T = 4
        trajectory_to_data(run("bfs", STAR, 1)),  # T = 3
        trajectory_to_data(run("bfs", TWO_COMPONENTS, 2)),  # T = 2
    ]
    labels = concept_labels(collate(datas))
    _check(
        labels,
        {
            "step_mask": [[T_, T_, T_]] * 4 + [[T_, T_, F_]] * 4 + [[T_, F_, F_]] * 4,
            "is_visited": [
                [T_, T_, T_],
                [T_, T_, T_],
                [F_, T_, T_],
                [F_, F_, T_],  # path
                [T_, T_, F_],
                [T_, T_, F_],
                [F_, T_, F_],
                [F_, T_, F_],  # star, step 2 padded
                [F_, F_, F_],
                [F_, F_, F_],
                [T_, F_, F_],
                [T_, F_, F_],  # two components
            ],
            "is_source": [
                [T_, T_, T_],
                [F_] * 3,
                [F_] * 3,
                [F_] * 3,
                [F_] * 3,
                [T_, T_, F_],
                [F_] * 3,
                [F_] * 3,
                [F_] * 3,
                [F_] * 3,
                [T_, F_, F_],
                [F_] * 3,
            ],
        },
    )


# ----------------------------------------------------------------- DFS, Dijkstra, Prim by hand


def test_dfs_by_hand():
    # Directed edge 0 -> 1. CLRS's DFS records: h0 start of the tree at 0, h1 discover 0,
    # h2 push 1 (grey), h3 at 1 (discover), h4 finish 1, h5 finish 0 -> T = 6, S = 5.
    A = np.zeros((2, 2))
    A[0, 1] = 1.0
    labels = concept_labels(trajectory_to_data(run("dfs", A)))
    _check(
        labels,
        {
            "step_mask": [[T_] * 5] * 2,
            "is_source": [[T_] * 5, [F_] * 5],
            "is_visited": [[T_, T_, T_, T_, T_], [F_, T_, T_, T_, T_]],
            "is_active": [[T_, T_, T_, T_, F_], [F_, T_, T_, F_, F_]],
            "is_finished": [[F_, F_, F_, F_, T_], [F_, F_, F_, T_, T_]],
            "is_current": [[T_, T_, F_, F_, T_], [F_, F_, T_, T_, F_]],
        },
    )


WEIGHTED_PATH = _undirected(3, [(0, 1), (1, 2)], weights=[0.5, 0.25])


def test_dijkstra_by_hand():
    # from 0: h1 settles 0 (d1 = 0.5), h2 settles 1 (d2 = 0.75), h3 settles 2 -> S = 3
    labels = _labels("dijkstra", WEIGHTED_PATH, 0)
    _check(
        labels,
        {
            "step_mask": [[T_] * 3] * 3,
            "is_source": [[T_] * 3, [F_] * 3, [F_] * 3],
            "is_settled": [[T_, T_, T_], [F_, T_, T_], [F_, F_, T_]],
            "is_in_queue": [[F_, F_, F_], [T_, F_, F_], [F_, T_, F_]],
            "is_current": [[T_, F_, F_], [F_, T_, F_], [F_, F_, T_]],
            "distance_estimate": [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.0, 0.75, 0.75]],
        },
    )


def test_prim_by_hand():
    # same order as Dijkstra, but key(2) is the edge weight 0.25, not the path length 0.75
    labels = _labels("mst_prim", WEIGHTED_PATH, 0)
    _check(
        labels,
        {
            "is_in_tree": [[T_, T_, T_], [F_, T_, T_], [F_, F_, T_]],
            "is_in_queue": [[F_, F_, F_], [T_, F_, F_], [F_, T_, F_]],
            "is_current": [[T_, F_, F_], [F_, T_, F_], [F_, F_, T_]],
            "key_value": [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.0, 0.25, 0.25]],
        },
    )


# ----------------------------------------------------------------- every algorithm


def _batch(algorithm: str):
    if algorithm not in _REGISTRY:
        pytest.skip(f"{algorithm} is not registered in hooked_nar.algorithms yet")
    ds = CLRSDataset(algorithm, 6, sizes=(3, 5, 8), seed=1, progress=False)
    return collate(list(ds))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_read_is_computed_shifted_by_one_step(algorithm):
    batch = _batch(algorithm)
    computed = concept_labels(batch, "computed")
    read = concept_labels(batch, "read")
    mask = computed["step_mask"]
    assert torch.equal(mask, read["step_mask"])
    # processor step t is real iff t < length - 1 of the node's graph
    assert torch.equal(mask.sum(1), batch.length[batch.batch] - 1)
    for name in CONCEPTS[algorithm]:
        c, r = computed[name], read[name]
        both = mask[:, 1:]  # steps t+1 that are real
        # what step t computes is what step t+1 reads
        assert torch.equal(c[:, :-1][both], r[:, 1:][both]), name


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_labels_match_hints_and_padded_steps_are_neutral(algorithm):
    batch = _batch(algorithm)
    assert len(set(batch.length.tolist())) > 1
    labels = concept_labels(batch)
    mask = labels["step_mask"]
    S = batch.step_mask.shape[1] - 1
    assert mask.shape == (batch.num_nodes, S)
    for name, concept in CONCEPTS[algorithm].items():
        lab = labels[name]
        assert lab.shape == (batch.num_nodes, S) and lab.dtype == concept.dtype, name
        assert not lab[~mask].any(), f"{name} is not neutral on padded steps"
        # spot check against the raw field for masks/scalars
        fs = SPECS[algorithm][concept.source_hint]
        if concept.rule[0] in ("mask", "scalar") and fs.stage == "hint" and fs.location == "node":
            raw = batch[concept.source_hint][:, 1:]
            want = raw > 0.5 if concept.rule[0] == "mask" else raw.float()
            assert torch.equal(lab[mask], want[mask]), name
    # perturbing padded hint values changes no label
    perturbed = batch.clone()
    node_mask = batch.step_mask[batch.batch]
    for name, fs in SPECS[algorithm].items():
        if fs.stage == "hint" and fs.location == "node" and fs.type != "pointer":
            x = perturbed[name].clone()
            x[~node_mask] = 1.0
            perturbed[name] = x
    again = concept_labels(perturbed)
    for name in CONCEPTS[algorithm]:
        assert torch.equal(again[name], labels[name]), name


def test_concept_invariants_on_real_graphs():
    for alg in ("bfs", "dfs", "dijkstra", "mst_prim"):
        if alg not in _REGISTRY:
            continue
        batch = _batch(alg)
        lab = concept_labels(batch)
        m = lab["step_mask"]
        if alg == "bfs":
            assert not (lab["is_frontier"] & ~lab["is_visited"]).any()
            read = concept_labels(batch, "read")
            # every node reached by the end was a frontier exactly once over hints 0 .. T-1
            last = m.sum(1) - 1  # column of hint length-1 in the computed labels
            ok = last >= 0
            rows = torch.arange(batch.num_nodes)[ok]
            total = read["is_frontier"].sum(1)[ok] + lab["is_frontier"][rows, last[ok]]
            assert torch.equal(total, lab["is_visited"][rows, last[ok]].long())
        if alg == "dfs":
            assert torch.equal(lab["is_visited"], lab["is_active"] | lab["is_finished"])
            assert not (lab["is_active"] & lab["is_finished"]).any()
            # exactly one current node per graph and real step
            per_graph = torch.zeros(batch.num_graphs, m.shape[1], dtype=torch.long)
            per_graph.index_add_(0, batch.batch, lab["is_current"].long())
            assert (per_graph[batch.step_mask[:, 1:]] == 1).all()
        if alg in ("dijkstra", "mst_prim"):
            settled = lab["is_settled"] if alg == "dijkstra" else lab["is_in_tree"]
            assert not (settled & lab["is_in_queue"]).any()
            assert not (lab["is_current"] & ~settled).any()


def test_concepts_table_covers_all_algorithms():
    assert set(CONCEPTS) == set(ALGORITHMS)
    required = {
        "bfs": {"is_source", "is_visited", "is_frontier"},
        "dfs": {"is_source", "is_visited", "is_active", "is_finished", "is_current"},
        "dijkstra": {"is_source", "is_settled", "is_in_queue", "is_current", "distance_estimate"},
        "mst_prim": {"is_source", "is_in_tree", "is_in_queue", "is_current", "key_value"},
    }
    for alg, names in required.items():
        assert names <= set(CONCEPTS[alg]), alg
    assert {"color_is_white", "color_is_grey", "color_is_black"} <= set(
        CONCEPTS["topological_sort"]
    )
    table = concepts_markdown()
    for alg, concepts in CONCEPTS.items():
        assert concepts, alg
        for name, c in concepts.items():
            assert c.source_hint in SPECS[alg], (alg, name)
            assert c.dtype in (torch.bool, torch.float32)
            assert f"| {alg} | `{name}` |" in table
    assert table.count("\n") == 2 + sum(len(c) for c in CONCEPTS.values())


def test_bad_arguments():
    data = trajectory_to_data(run("bfs", PATH, 0))
    with pytest.raises(ValueError, match="state"):
        concept_labels(data, state="next")
    with pytest.raises(ValueError, match="concepts"):
        concept_labels(data, concepts=["is_settled"])
    assert set(concept_labels(data, concepts=["is_visited"])) == {"is_visited", "step_mask"}

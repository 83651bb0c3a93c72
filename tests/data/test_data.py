"""Graph generators, Trajectory <-> Data round trip, datasets with a safe cache, step-masked batching."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch_geometric.data import Batch

import hooked_nar.data.dataset as dataset_mod
from hooked_nar.algorithms import ALGORITHMS, SPECS, Trajectory, run
from hooked_nar.algorithms.registry import _REGISTRY
from hooked_nar.data import (
    EDGE_SETS,
    GENERATORS,
    GRAPH_CONVENTIONS,
    CLRSDataset,
    CLRSLoader,
    collate,
    complete,
    data_to_trajectory,
    delaunay,
    edge_step_mask,
    er_probability_range,
    erdos_renyi,
    grid,
    make_splits,
    node_step_mask,
    pad_steps,
    path,
    random_tree,
    sample_graph,
    trajectory_to_data,
    watts_strogatz,
)
from tests.reference import load_samples, source_of

DIRECT = {
    "erdos_renyi": lambda **kw: erdos_renyi(12, (0.2, 0.5), **kw),
    "watts_strogatz": lambda **kw: watts_strogatz(12, 4, 0.3, **kw),
    "delaunay": lambda **kw: delaunay(12, **kw),
    "grid": lambda **kw: grid(3, 4, **kw),
    "random_tree": lambda **kw: random_tree(12, **kw),
    "path": lambda **kw: path(12, **kw),
    "complete": lambda **kw: complete(12, **kw),
}


def _registered(algorithm: str) -> None:
    if algorithm not in _REGISTRY:
        pytest.skip(f"{algorithm} is not registered in hooked_nar.algorithms yet")


def _off_diagonal(A: np.ndarray) -> np.ndarray:
    return A - np.diag(np.diag(A))


# ------------------------------------------------------------------------- generators


@pytest.mark.parametrize("name", sorted(DIRECT))
def test_generators_are_seeded(name):
    make = DIRECT[name]
    for kw in ({}, {"weighted": True, "self_loops": 0.5}, {"directed": True, "weighted": True}):
        a, b = make(seed=3, **kw), make(seed=3, **kw)
        np.testing.assert_array_equal(a, b)
        # an explicit Generator in the same state gives the same graph too
        np.testing.assert_array_equal(a, make(rng=np.random.default_rng(3), **kw))
    # different seeds give different graphs (weights at least; structure for random ones)
    assert not np.array_equal(make(seed=1, weighted=True), make(seed=2, weighted=True))
    if name in ("erdos_renyi", "watts_strogatz", "delaunay", "random_tree"):
        structures = {(make(seed=s) != 0).tobytes() for s in range(6)}
        assert len(structures) > 1


@pytest.mark.parametrize("name", sorted(DIRECT))
def test_generator_flags(name):
    make = DIRECT[name]
    for seed in range(5):
        und = make(seed=seed)
        assert np.array_equal(und, und.T)
        assert set(np.unique(und)) <= {0.0, 1.0}
        assert not np.diag(und).any()

        dag = make(seed=seed, acyclic=True, weighted=True, self_loops=1.0)
        assert not np.diag(dag).any()
        assert nx.is_directed_acyclic_graph(nx.DiGraph(dag))
        # orienting keeps the undirected structure (drawn first from the same seed): every
        # edge appears in exactly one direction
        np.testing.assert_array_equal((dag != 0) | (dag != 0).T, und != 0)
        assert not ((dag != 0) & (dag != 0).T).any()

        w = make(seed=seed, weighted=True, low=0.0, high=1.0)
        assert np.array_equal(w, w.T)
        assert ((w[w != 0] > 0) & (w[w != 0] <= 1)).all()
        if (w != 0).sum() > 4:
            assert len(np.unique(w[w != 0])) > 2  # random weights, not a constant

        loops = make(seed=seed, self_loops=1.0)
        assert np.diag(loops).all()

    directed = [make(seed=s, directed=True) for s in range(8)]
    assert any(not np.array_equal(d, d.T) for d in directed)


def test_structured_generators_have_their_shape():
    g = grid(3, 4)
    assert (g != 0).sum() // 2 == 3 * 3 + 2 * 4
    assert nx.is_connected(nx.from_numpy_array(g))
    for seed in range(5):
        t = random_tree(15, seed=seed)
        assert nx.is_tree(nx.from_numpy_array(t))
        ws = watts_strogatz(20, 4, 0.5, seed=seed)
        assert (ws != 0).sum() // 2 == 20 * 4 // 2  # rewiring keeps the edge count
        dl = delaunay(30, seed=seed)
        G = nx.from_numpy_array(dl)
        assert nx.is_connected(G) and G.number_of_edges() <= 3 * 30 - 6  # planar
        assert nx.check_planarity(G)[0]
    assert nx.is_isomorphic(nx.from_numpy_array(path(6)), nx.path_graph(6))
    assert (complete(5) != 0).sum() == 20
    assert (
        erdos_renyi(10, 0.0, seed=0).sum() == 0 and (erdos_renyi(10, 1.0, seed=0) != 0).sum() == 90
    )


def test_er_probability_range_avoids_empty_and_complete():
    for n in (4, 7, 11, 13, 16, 64, 160):
        lo, hi = er_probability_range(n)
        assert 0 < lo <= hi <= 0.5
    densities = []
    for seed in range(40):
        A, _ = sample_graph("bfs", 16, "er", seed=seed)
        off = _off_diagonal(A) != 0
        densities.append(off.sum() / (16 * 15))
    assert 0 < min(densities) and max(densities) < 1
    assert 0.1 < np.mean(densities) < 0.5


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_sample_graph_follows_clrs_conventions(algorithm):
    conv = GRAPH_CONVENTIONS[algorithm]
    needs_source = SPECS[algorithm].get("s") is not None and SPECS[algorithm]["s"].stage == "input"
    weights, asymmetric, loops = [], 0, 0
    for generator in GENERATORS:
        for seed in range(4):
            n = 9
            A, s = sample_graph(algorithm, n, generator, seed=seed)
            B, s2 = sample_graph(algorithm, n, generator, rng=np.random.default_rng(seed))
            np.testing.assert_array_equal(A, B)
            assert s == s2
            assert A.shape == (n, n) and A.dtype == np.float64
            assert (s is not None) == needs_source
            if s is not None:
                assert 0 <= s < n
            if not conv.directed:
                np.testing.assert_array_equal(A, A.T)
            asymmetric += not np.array_equal(A != 0, (A != 0).T)
            if conv.acyclic:
                assert not np.diag(A).any()
                assert nx.is_directed_acyclic_graph(nx.DiGraph(A))
            loops += int(np.diag(A).any())
            weights.extend(A[A != 0].tolist())
    weights = np.array(weights)
    if conv.weighted:
        # CLRS's own sampler draws sqrt(w * w.T + 1e-3), which may pass 1 by 5e-4
        assert (weights > 0).all() and (weights <= np.sqrt(1 + 1e-3)).all()
        assert len(np.unique(weights)) > 10
    else:
        assert (weights == 1).all()
    assert (asymmetric > 0) == conv.directed
    assert (loops > 0) == conv.self_loops


def test_sample_graph_conventions_match_reference_graphs():
    for algorithm, conv in GRAPH_CONVENTIONS.items():
        samples = load_samples(algorithm)[6:]  # random ER graphs
        As = [np.atleast_2d(s["input"]["A"]) for s in samples]
        assert all(np.array_equal(A, A.T) for A in As) == (not conv.directed)
        if conv.acyclic:
            assert all(nx.is_directed_acyclic_graph(nx.DiGraph(A)) for A in As)
        assert any(np.diag(A).any() for A in As) == conv.self_loops
        w = np.concatenate([A[A != 0] for A in As])
        assert (w == 1).all() == (not conv.weighted)


def test_sample_graph_rejects_bad_names():
    with pytest.raises(ValueError, match="algorithm"):
        sample_graph("quicksort", 5)
    with pytest.raises(ValueError, match="generator"):
        sample_graph("bfs", 5, "barabasi")


# ------------------------------------------------------------------------- round trip


def _assert_trajectories_equal(ours: Trajectory, ref: Trajectory, where: str) -> None:
    assert ours.algorithm == ref.algorithm
    for stage in ("inputs", "hints", "outputs"):
        a, b = getattr(ours, stage), getattr(ref, stage)
        assert a.keys() == b.keys(), f"{where} {stage}"
        for name in a:
            assert a[name].shape == b[name].shape, f"{where} {stage}/{name}"
            assert a[name].dtype == b[name].dtype, f"{where} {stage}/{name}"
            np.testing.assert_array_equal(a[name], b[name], err_msg=f"{where} {stage}/{name}")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_round_trip_is_exact_on_every_reference_sample(algorithm):
    _registered(algorithm)
    spec = SPECS[algorithm]
    for i, sample in enumerate(load_samples(algorithm)):
        A = np.atleast_2d(sample["input"]["A"])
        traj = run(algorithm, A, source_of(sample))
        data = trajectory_to_data(traj, dtype=torch.float64)
        _assert_trajectories_equal(data_to_trajectory(data), traj, f"{algorithm}[{i}]")

        # the default float32 layout: everything exact except float32 rounding of scalars
        data32 = trajectory_to_data(traj)
        back = data_to_trajectory(data32)
        for stage in ("inputs", "hints", "outputs"):
            for name, x in getattr(traj, stage).items():
                y = getattr(back, stage)[name]
                if spec[name].type == "scalar":
                    x = x.astype(np.float32).astype(np.float64)
                np.testing.assert_array_equal(y, x, err_msg=f"{algorithm}[{i}] {name}")

        # layout invariants
        n, T = traj.num_nodes, traj.length
        ei = data.edge_index
        assert data.num_nodes == n and int(data.length) == T and data.algorithm == algorithm
        keys = (ei[0] * n + ei[1]).tolist()
        assert keys == sorted(set(keys))  # sorted by (i, j), no duplicates
        adj = traj.inputs["adj"] != 0
        assert adj[ei[0], ei[1]].sum() == adj.sum()  # every adj pair (self-loops too) is an edge
        if EDGE_SETS.get(algorithm) == "complete":
            assert ei.shape[1] == n * n
        for name, fs in spec.items():
            x = data[name]
            if fs.type == "pointer":
                assert x.dtype == torch.long and data32[name].dtype == torch.long
            else:
                assert x.dtype == torch.float64 and data32[name].dtype == torch.float32
            if fs.stage == "hint":
                assert x.shape[1] == T


def _unsqueezed(algorithm: str, stage: str, fields: dict) -> dict:
    out = {}
    for name, v in fields.items():
        v, fs = np.asarray(v), SPECS[algorithm][name]
        if stage != "hint" and fs.location != "graph" and v.ndim == 0:
            v = v.reshape((1,) if fs.location == "node" else (1, 1))  # CLRS squeezes n = 1
        out[name] = v
    return out


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_round_trip_of_raw_reference_arrays(algorithm):
    """The npz arrays themselves (not our execution) survive the round trip value for value."""
    for i, s in enumerate(load_samples(algorithm)):
        traj = Trajectory(
            algorithm,
            _unsqueezed(algorithm, "input", s["input"]),
            dict(s["hint"]),
            _unsqueezed(algorithm, "output", s["output"]),
        )
        back = data_to_trajectory(trajectory_to_data(traj, dtype=torch.float64))
        for stage in ("inputs", "hints", "outputs"):
            for name, x in getattr(traj, stage).items():
                np.testing.assert_array_equal(
                    getattr(back, stage)[name], x, err_msg=f"{algorithm}[{i}] {name}"
                )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    algorithm=st.sampled_from(ALGORITHMS),
    generator=st.sampled_from(sorted(GENERATORS)),
    n=st.integers(1, 10),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_on_random_graphs_of_every_generator(algorithm, generator, n, seed):
    if algorithm not in _REGISTRY:
        return
    A, s = sample_graph(algorithm, n, generator, seed=seed)
    traj = run(algorithm, A, s)
    data = trajectory_to_data(traj, dtype=torch.float64)
    _assert_trajectories_equal(data_to_trajectory(data), traj, f"{algorithm}/{generator}")
    _assert_trajectories_equal(data_to_trajectory(collate([data]).to_data_list()[0]), traj, "")


def test_edge_data_outside_the_edge_set_is_refused():
    _registered("mst_kruskal")
    A = path(4, weighted=True, seed=0)
    traj = run("mst_kruskal", A)
    traj.hints["in_mst_h"][-1, 0, 3] = 1.0  # (0, 3) is no edge of the path
    with pytest.raises(ValueError, match="in_mst_h"):
        trajectory_to_data(traj)


def test_pointers_are_not_offset_by_batching():
    trajs = [run("bfs", path(5), 2), run("bfs", complete(4), 3), run("bfs", grid(2, 3), 0)]
    datas = [trajectory_to_data(t) for t in trajs]
    batch = collate(datas)
    for g, (t, d) in enumerate(zip(trajs, datas, strict=True)):
        lo, hi = int(batch.ptr[g]), int(batch.ptr[g + 1])
        np.testing.assert_array_equal(batch.pi[lo:hi].numpy(), t.outputs["pi"])
        np.testing.assert_array_equal(batch.pi_h[lo:hi, : t.length].numpy(), t.hints["pi_h"].T)
        # edge_index IS offset, as usual in PyG
        e = batch.edge_index[:, batch.batch[batch.edge_index[0]] == g] - lo
        assert torch.equal(e, d.edge_index)
    for d, t in zip(batch.to_data_list(), trajs, strict=True):
        _assert_trajectories_equal(
            data_to_trajectory(d), data_to_trajectory(trajectory_to_data(t)), ""
        )


# ------------------------------------------------------------------------- dataset


def _datasets_equal(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert set(x.keys()) == set(y.keys())
        for k in x.keys():
            if torch.is_tensor(x[k]):
                assert torch.equal(x[k], y[k]) and x[k].dtype == y[k].dtype, k
            else:
                assert x[k] == y[k], k


def test_dataset_is_reproducible_and_behaves_like_a_pyg_dataset():
    ds = CLRSDataset("bfs", 12, sizes=(4, 7, 11), seed=5, progress=False)
    again = CLRSDataset("bfs", 12, sizes=(4, 7, 11), seed=5, progress=False)
    _datasets_equal(ds, again)
    other = CLRSDataset("bfs", 12, sizes=(4, 7, 11), seed=6, progress=False)
    assert any(
        a.A.shape != b.A.shape or not torch.equal(a.A, b.A) for a, b in zip(ds, other, strict=True)
    )
    assert len(ds) == 12 and {d.num_nodes for d in ds} <= {4, 7, 11}
    assert len({d.num_nodes for d in ds}) > 1
    sub = ds[2:5]
    assert len(sub) == 3 and torch.equal(sub[0].A, ds[2].A)
    assert torch.equal(ds[[3, 1]][1].edge_index, ds[1].edge_index)
    # a dataset is a prefix of a larger one with the same seed
    _datasets_equal(ds, CLRSDataset("bfs", 20, sizes=(4, 7, 11), seed=5, progress=False)[:12])
    # every item converts back to the trajectory of its graph
    for d in ds:
        traj = data_to_trajectory(d)
        _assert_trajectories_equal(
            data_to_trajectory(
                trajectory_to_data(run("bfs", traj.inputs["A"], int(traj.inputs["s"].argmax())))
            ),
            traj,
            "dataset item",
        )


def test_dataset_rejects_unknown_names():
    with pytest.raises(ValueError, match="algorithm"):
        CLRSDataset("heapsort", 2, progress=False)
    with pytest.raises(ValueError, match="generator"):
        CLRSDataset("bfs", 2, generator="lattice", progress=False)
    with pytest.raises(ValueError, match="sizes"):
        CLRSDataset("bfs", 2, sizes=(), progress=False)


def test_cache_key_covers_every_parameter(tmp_path):
    base = dict(algorithm="bfs", num_graphs=3, generator="er", sizes=(4,), seed=0)
    key = CLRSDataset(**base, root=tmp_path, progress=False).cache_key
    variants = [
        {"algorithm": "dijkstra"},
        {"num_graphs": 4},
        {"generator": "ws"},
        {"sizes": (5,)},
        {"sizes": (4, 5)},
        {"seed": 1},
    ]
    keys = {key}
    for change in variants:
        keys.add(CLRSDataset(**{**base, **change}, root=tmp_path, progress=False).cache_key)
    assert len(keys) == len(variants) + 1
    orig = dataset_mod.FORMAT_VERSION
    try:
        dataset_mod.FORMAT_VERSION = orig + 1
        bumped = CLRSDataset(**base, root=tmp_path, progress=False).cache_key
    finally:
        dataset_mod.FORMAT_VERSION = orig
    assert bumped not in keys
    keys.add(bumped)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{k}.pt" for k in keys)


@pytest.mark.parametrize("algorithm", ["bfs", "dfs", "floyd_warshall", "mst_kruskal"])
def test_cached_load_equals_fresh_generation(tmp_path, algorithm, monkeypatch):
    _registered(algorithm)
    kw = dict(num_graphs=6, sizes=(3, 6), seed=2, progress=False)
    fresh = CLRSDataset(algorithm, **kw)
    first = CLRSDataset(algorithm, **kw, root=tmp_path)
    assert first.cache_path.exists()
    # the file is plain tensors: it loads with weights_only=True
    torch.load(first.cache_path, weights_only=True)

    def no_generation(self):
        raise AssertionError("should have loaded from the cache")

    monkeypatch.setattr(CLRSDataset, "_generate", no_generation)
    cached = CLRSDataset(algorithm, **kw, root=tmp_path)
    _datasets_equal(fresh, first)
    _datasets_equal(fresh, cached)


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    real_save = torch.save

    def crash_midway(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(10)  # half-written bytes on disk ...
        raise KeyboardInterrupt("simulated crash")  # ... and the process dies

    monkeypatch.setattr(dataset_mod.torch, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        CLRSDataset("bfs", 4, sizes=(5,), root=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []  # neither the final file nor a temp file

    monkeypatch.setattr(dataset_mod.torch, "save", real_save)
    ds = CLRSDataset("bfs", 4, sizes=(5,), root=tmp_path, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == [ds.cache_path.name]


def test_corrupt_cache_file_is_regenerated(tmp_path):
    ds = CLRSDataset("bfs", 4, sizes=(5,), root=tmp_path, progress=False)
    ds.cache_path.write_bytes(b"not a torch file")
    again = CLRSDataset("bfs", 4, sizes=(5,), root=tmp_path, progress=False)
    _datasets_equal(ds, again)
    assert torch.load(ds.cache_path, weights_only=True)["num_nodes"].tolist() == [5] * 4


def test_make_splits():
    splits = make_splits(
        "bfs", num_train=6, num_val=3, num_test=2, seed=1, progress=False, test_sizes=(20, 24)
    )
    assert set(splits) == {"train", "val"} | {
        f"test_{g}_{n}" for g in ("clrs", "sparse", "er", "ws", "delaunay") for n in (20, 24)
    }
    assert splits["train"].sizes == (4, 7, 11, 13, 16) and splits["train"].generator == "er"
    assert splits["val"].sizes == (16,) and len(splits["val"]) == 3
    assert splits["test_ws_24"].generator == "ws" and splits["test_ws_24"].sizes == (24,)
    assert all(d.num_nodes == 20 for d in splits["test_delaunay_20"])
    assert len({ds.seed for ds in splits.values()}) == len(splits)
    default = make_splits("bfs", num_train=1, num_val=1, num_test=1, progress=False)
    mixed = make_splits("bfs", 2, 1, 1, test_sizes=(8,), train_generator="mixed", progress=False)
    assert mixed["train"].generator == mixed["val"].generator == "mixed"
    assert {
        "test_clrs_64",
        "test_sparse_160",
        "test_er_64",
        "test_er_160",
        "test_ws_64",
        "test_ws_160",
        "test_delaunay_64",
        "test_delaunay_160",
    } <= set(default)


# ------------------------------------------------------------------------- batching


def test_pad_steps_repeats_the_last_step():
    traj = run("bfs", path(5), 0)
    d = trajectory_to_data(traj, dtype=torch.float64)
    p = pad_steps(d, traj.length + 3)
    assert p.reach_h.shape == (5, traj.length + 3)
    assert torch.equal(p.reach_h[:, : traj.length], d.reach_h)
    for t in range(traj.length, traj.length + 3):
        assert torch.equal(p.reach_h[:, t], d.reach_h[:, -1])
        assert torch.equal(p.pi_h[:, t], d.pi_h[:, -1])
    assert p.step_mask.tolist() == [[True] * traj.length + [False] * 3]
    assert d.reach_h.shape[1] == traj.length  # input untouched
    _assert_trajectories_equal(data_to_trajectory(p), traj, "padded")
    with pytest.raises(ValueError):
        pad_steps(d, traj.length - 1)


def _bce(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p))


def test_masked_loss_over_a_padded_batch_equals_per_graph_loss():
    ds = CLRSDataset("bfs", 10, sizes=(3, 6, 9, 14), seed=4, progress=False)
    assert len({int(d.length) for d in ds}) > 1  # lengths differ, so padding happens
    batch = collate(list(ds))
    T = batch.step_mask.shape[1]
    gen = torch.Generator().manual_seed(0)
    pred = torch.rand(batch.num_nodes, T, generator=gen) * 0.98 + 0.01  # a random predictor
    mask = node_step_mask(batch)
    assert torch.equal(mask, batch.step_mask[batch.batch])
    batched = (_bce(pred, batch.reach_h) * mask).sum()

    per_graph = torch.zeros(())
    for g, d in enumerate(ds):
        lo, hi = int(batch.ptr[g]), int(batch.ptr[g + 1])
        L = int(d.length)
        per_graph = per_graph + _bce(pred[lo:hi, :L], d.reach_h).sum()
    torch.testing.assert_close(batched, per_graph, rtol=0, atol=1e-4)
    assert int(mask.sum()) == sum(d.num_nodes * int(d.length) for d in ds)

    # padded (node, step) pairs never contribute: perturbing them changes nothing
    target = batch.reach_h.clone()
    target[~mask] = torch.rand(int((~mask).sum()), generator=gen)
    pred2 = pred.clone()
    pred2[~mask] = 0.5
    assert torch.equal((_bce(pred2, target) * mask).sum(), batched)


def test_edge_step_mask_and_loader():
    _registered("bridges")
    ds = CLRSDataset("bridges", 8, sizes=(4, 9), seed=0, progress=False)
    loader = CLRSLoader(ds, batch_size=3, shuffle=True, seed=7)
    again = CLRSLoader(ds, batch_size=3, shuffle=True, seed=7)
    seen = 0
    for batch, other in zip(loader, again, strict=True):
        assert isinstance(batch, Batch)
        assert torch.equal(batch.length, other.length) and torch.equal(batch.A, other.A)
        em = edge_step_mask(batch)
        graph_of_edge = batch.batch[batch.edge_index[0]]
        assert torch.equal(em.sum(1), batch.length[graph_of_edge])
        assert batch.is_bridge_h.shape == em.shape
        assert torch.equal(batch.step_mask.sum(1), batch.length)
        seen += batch.num_graphs
    assert seen == len(ds)
    orders = [
        torch.cat([b.length for b in CLRSLoader(ds, 8, shuffle=True, seed=s)]) for s in range(4)
    ]
    assert any(not torch.equal(orders[0], o) for o in orders[1:])


def test_collate_rejects_mixed_algorithms():
    _registered("dijkstra")
    a = trajectory_to_data(run("bfs", path(3), 0))
    b = trajectory_to_data(run("dijkstra", path(3, weighted=True, seed=0), 0))
    with pytest.raises(ValueError, match="one algorithm"):
        collate([a, b])

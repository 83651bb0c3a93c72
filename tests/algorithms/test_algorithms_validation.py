"""Input validation of ``run`` / ``run_many``: bad input raises a ``ValueError`` that names the
offending argument; ``run_many`` equals ``run`` graph by graph; ``run`` never mutates ``A``."""

from __future__ import annotations

import numpy as np
import pytest

from hooked_nar.algorithms import ALGORITHMS, get_algorithm, run, run_many
from hooked_nar.data import sample_graph

NEGATIVE_OK = ("bellman_ford", "dag_shortest_paths", "floyd_warshall")
NEGATIVE_REJECTED = ("dijkstra", "mst_prim", "mst_kruskal", "bfs", "dfs")


def _source(name: str) -> int | None:
    return 0 if get_algorithm(name).needs_source else None


def _graph(n: int = 3) -> np.ndarray:
    A = np.zeros((n, n))
    for i in range(n - 1):
        A[i, i + 1] = A[i + 1, i] = 1.0
    return A


# ------------------------------------------------------------------------------- A


@pytest.mark.parametrize(
    "A",
    [np.zeros(3), np.zeros((2, 2, 2)), np.float64(1.0), np.zeros((2, 3)), np.zeros((3, 2))],
    ids=["1d", "3d", "0d", "2x3", "3x2"],
)
@pytest.mark.parametrize("name", ["bfs", "dfs", "floyd_warshall"])
def test_non_square_or_not_2d_A(name, A):
    with pytest.raises(ValueError, match=r"A must be a square 2-D .*got shape"):
        run(name, A, _source(name))


@pytest.mark.parametrize("A", [np.zeros((0, 0)), []], ids=["0x0", "empty-list"])
def test_empty_A(A):
    with pytest.raises(ValueError, match=r"^A must"):
        run("bfs", A, 0)
    with pytest.raises(ValueError, match=r"A must have at least one node"):
        run("dfs", np.zeros((0, 0)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", ALGORITHMS)
def test_nan_and_inf_weights(name, bad):
    A = _graph()
    A[0, 1] = bad
    with pytest.raises(ValueError, match=r"A contains NaN or infinite weights"):
        run(name, A, _source(name))


@pytest.mark.parametrize("A", [np.array([["a", "b"], ["c", "d"]]), np.array([[0, 1j], [1, 0]])])
def test_non_real_dtype(A):
    with pytest.raises(ValueError, match=r"A must hold real numeric weights, got dtype"):
        run("bfs", A, 0)


@pytest.mark.parametrize("name", NEGATIVE_REJECTED)
def test_negative_weights_rejected(name):
    A = _graph()
    A[0, 1] = A[1, 0] = -0.5
    with pytest.raises(ValueError, match=rf"A has negative weights, which {name} does not allow"):
        run(name, A, _source(name))


@pytest.mark.parametrize("name", NEGATIVE_OK)
def test_negative_weights_accepted_without_negative_cycle(name):
    A = np.zeros((4, 4))  # a DAG with negative edges: 0 -> 1 -> 2 -> 3, 0 -> 2
    A[0, 1], A[1, 2], A[2, 3], A[0, 2] = 2.0, -1.5, 0.5, 3.0
    traj = run(name, A, _source(name))
    if name == "floyd_warshall":
        np.testing.assert_array_equal(traj.outputs["Pi"][0], [0, 0, 1, 2])
        np.testing.assert_allclose(traj.hints["D"][-1][0], [0.0, 2.0, 0.5, 1.0])
    else:
        np.testing.assert_array_equal(traj.outputs["pi"], [0, 0, 1, 2])


def test_negative_cycle_bellman_ford_and_floyd_warshall():
    A = np.zeros((3, 3))
    A[0, 1], A[1, 2], A[2, 1] = 1.0, 1.0, -2.0  # 1 -> 2 -> 1 weighs -1, reachable from 0
    with pytest.raises(ValueError, match=r"A has a negative cycle reachable from source 0"):
        run("bellman_ford", A, 0)
    with pytest.raises(ValueError, match=r"A has a negative cycle"):
        run("floyd_warshall", A)


# --------------------------------------------------------------------------- source


@pytest.mark.parametrize("source", [3, 100, -1, -3])
@pytest.mark.parametrize("name", ["bfs", "dijkstra", "bellman_ford"])
def test_source_out_of_range(name, source):
    with pytest.raises(ValueError, match=rf"source={source} is out of range .*3 nodes"):
        run(name, _graph(3), source)


@pytest.mark.parametrize("name", [a for a in ALGORITHMS if get_algorithm(a).needs_source])
def test_source_missing(name):
    with pytest.raises(ValueError, match=rf"source is required for {name}"):
        run(name, _graph())


@pytest.mark.parametrize(
    "source", [True, False, np.bool_(True), 1.0, np.float64(0.0), "0", [0]], ids=repr
)
def test_source_wrong_type(source):
    with pytest.raises(ValueError, match=r"source must be an integer node index"):
        run("bfs", _graph(), source)


def test_source_numpy_integer_accepted():
    traj = run("bfs", _graph(), np.int32(2))
    np.testing.assert_array_equal(traj.inputs["s"], [0.0, 0.0, 1.0])


@pytest.mark.parametrize("name", [a for a in ALGORITHMS if not get_algorithm(a).needs_source])
def test_source_given_to_algorithm_without_one(name):
    with pytest.raises(ValueError, match=rf"{name} takes no source"):
        run(name, _graph(), 0)


# ------------------------------------------------------------------------------ name


@pytest.mark.parametrize("name", ["nope", "BFS", "", None, 3])
def test_unknown_algorithm(name):
    with pytest.raises(ValueError, match=r"unknown algorithm name=") as info:
        run(name, _graph(), 0)
    for valid in ALGORITHMS:
        assert valid in str(info.value)
    with pytest.raises(ValueError, match=r"unknown algorithm name="):
        run_many(name, [_graph()], [0])


# -------------------------------------------------------------------------- run_many


def test_run_many_sources_length_mismatch():
    graphs = [_graph(), _graph(4)]
    with pytest.raises(ValueError, match=r"sources has 1 entries but graphs has 2"):
        run_many("bfs", graphs, [0])
    with pytest.raises(ValueError, match=r"sources has 3 entries but graphs has 2"):
        run_many("bfs", graphs, [0, 1, 2])
    with pytest.raises(ValueError, match=r"sources must be a sequence"):
        run_many("bfs", graphs, 0)


def test_run_many_names_the_bad_graph():
    graphs = [_graph(), _graph(), np.zeros((2, 3))]
    with pytest.raises(ValueError, match=r"graphs\[2\]: A must be a square"):
        run_many("bfs", graphs, [0, 1, 0])
    with pytest.raises(ValueError, match=r"graphs\[1\]: source=5 is out of range"):
        run_many("bfs", graphs[:2], [0, 5])
    with pytest.raises(ValueError, match=r"graphs\[0\]: source is required for bfs"):
        run_many("bfs", graphs[:2])
    with pytest.raises(ValueError, match=r"graphs\[0\]: dfs takes no source"):
        run_many("dfs", graphs[:2], [0, 0])


def test_run_many_empty():
    assert run_many("bfs", []) == []
    assert run_many("bfs", [], []) == []


def _assert_same(a, b, where: str) -> None:
    assert a.algorithm == b.algorithm, where
    for stage in ("inputs", "hints", "outputs"):
        da, db = getattr(a, stage), getattr(b, stage)
        assert set(da) == set(db), f"{where} {stage}"
        for key in da:
            assert da[key].dtype == db[key].dtype, f"{where} {stage}.{key}"
            np.testing.assert_array_equal(da[key], db[key], err_msg=f"{where} {stage}.{key}")


@pytest.mark.parametrize("name", ALGORITHMS)
def test_run_many_equals_run(name):
    rng = np.random.default_rng(7)
    sizes = (1, 2, 5, 8, 11)
    pairs = [sample_graph(name, n, rng=rng) for n in sizes]
    graphs = [A for A, _ in pairs]
    sources = [s for _, s in pairs]
    many = run_many(name, graphs, sources if sources[0] is not None else None)
    assert len(many) == len(graphs)
    for i, (A, s) in enumerate(pairs):
        _assert_same(many[i], run(name, A, s), f"{name}[{i}]")


# --------------------------------------------------------------------- no mutation


@pytest.mark.parametrize("name", ALGORITHMS)
def test_run_does_not_mutate_A(name):
    A, s = sample_graph(name, 9, seed=3)
    A = np.ascontiguousarray(A)
    before = A.copy()
    traj = run(name, A, s)
    np.testing.assert_array_equal(A, before)
    traj.inputs["A"][...] = 123.0  # the trajectory holds its own copy
    np.testing.assert_array_equal(A, before)
    (traj_many,) = run_many(name, [A], None if s is None else [s])
    np.testing.assert_array_equal(A, before)
    assert not np.shares_memory(traj_many.inputs["A"], A)


def test_int_and_bool_A_accepted_and_not_mutated():
    A_int = np.array([[0, 2], [2, 0]], dtype=np.int64)
    A_bool = A_int.astype(bool)
    for A in (A_int, A_bool):
        before = A.copy()
        traj = run("bfs", A, 0)
        assert traj.inputs["A"].dtype == np.float64
        np.testing.assert_array_equal(A, before)
        assert A.dtype == before.dtype

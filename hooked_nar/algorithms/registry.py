"""Algorithm registry, input validation, and the public ``run`` / ``run_many`` entry points."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from hooked_nar.algorithms.clrs_encoding import adjacency, mask_one, positions
from hooked_nar.algorithms.specs import SPECS
from hooked_nar.algorithms.trajectory import Trajectory

# (A [n, n] float64, source) -> (hints {name: [T, ...]}, outputs {name: [...]})
TraceFn = Callable[[np.ndarray, int], tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]


class GraphConvention(NamedTuple):
    """How the CLRS sampler of an algorithm draws its graphs.

    Verified against the CLRS reference data: undirected ones are symmetric, DAG ones are
    acyclic with an empty diagonal, all others have random self-loops, unweighted ones hold
    weight 1, weighted ones uniform weights in (0, 1).
    """

    directed: bool
    acyclic: bool
    weighted: bool
    self_loops: bool  # whether A[i, i] may be nonzero (CLRS ER graphs: yes unless acyclic)


@dataclass(frozen=True)
class Algorithm:
    """A registered CLRS algorithm: the one record of its facts, declared by :func:`register`
    beside its trace function; the per-algorithm tables elsewhere are views of these records."""

    name: str
    trace: TraceFn
    graph: GraphConvention  # how CLRS draws its graphs (``data.GRAPH_CONVENTIONS``)
    negative_weights: bool = False  # whether negative edge weights are allowed
    # Pointers that may point to nodes that are not in-neighbours (topological order links,
    # union-find parents, SCC representatives): the model's pointer heads score every node.
    dense_pointers: bool = False
    # Triplet-GMPNN's published CLRS-30 OOD score of the main output, as a fraction (Ibarz et
    # al. 2022, "A Generalist Neural Algorithmic Learner", LoG 2022); None where none is quoted.
    triplet_gmpnn: float | None = None
    # Node hint drawn as the trajectory in the study's data stage (None: the study picks one).
    trajectory_hint: str | None = None
    # (node hint, class name for a categorical hint) compared with the model's predictions
    # (None: the study picks one).
    prediction_hint: tuple[str, str | None] | None = None

    @property
    def needs_source(self) -> bool:
        """True when CLRS feeds a source node ``s`` as an input of this algorithm."""
        spec = SPECS[self.name].get("s")
        return spec is not None and spec.stage == "input"


_REGISTRY: dict[str, Algorithm] = {}


def register(
    name: str,
    *,
    graph: GraphConvention,
    negative_weights: bool = False,
    dense_pointers: bool = False,
    triplet_gmpnn: float | None = None,
    trajectory_hint: str | None = None,
    prediction_hint: tuple[str, str | None] | None = None,
) -> Callable[[TraceFn], TraceFn]:
    """Decorator that registers a trace function under a CLRS algorithm name, with the
    algorithm's facts (see :class:`Algorithm`)."""
    if name not in SPECS:
        raise KeyError(f"{name!r} is not a CLRS algorithm with a spec")

    def deco(fn: TraceFn) -> TraceFn:
        _REGISTRY[name] = Algorithm(
            name,
            fn,
            graph,
            negative_weights=negative_weights,
            dense_pointers=dense_pointers,
            triplet_gmpnn=triplet_gmpnn,
            trajectory_hint=trajectory_hint,
            prediction_hint=prediction_hint,
        )
        return fn

    return deco


def registered_algorithms() -> dict[str, Algorithm]:
    """Every registered :class:`Algorithm` by name (a copy)."""
    return dict(_REGISTRY)


def get_algorithm(name: str) -> Algorithm:
    """The registered :class:`Algorithm` called ``name``; ValueError listing the valid names
    otherwise."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(
            f"unknown algorithm name={name!r}; valid names: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name]


#: The largest float32: every weight, distance and key must stay below it once converted.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def validate_graph(
    algorithm: Algorithm, A: np.ndarray, source: int | None
) -> tuple[np.ndarray, int]:
    """Check ``A`` and ``source`` for ``algorithm``; return ``A`` as float64 and the source index."""
    A = np.asarray(A)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be a square 2-D weight matrix [n, n], got shape {A.shape}")
    if A.shape[0] == 0:
        raise ValueError("A must have at least one node, got shape (0, 0)")
    if np.issubdtype(A.dtype, np.complexfloating) or not (
        np.issubdtype(A.dtype, np.number) or A.dtype == np.bool_
    ):
        raise ValueError(f"A must hold real numeric weights, got dtype {A.dtype}")
    A = A.astype(np.float64, copy=True)
    if not np.isfinite(A).all():
        raise ValueError("A contains NaN or infinite weights; use 0 for a missing edge")
    largest = float(np.abs(A).max())
    if largest * A.shape[0] > FLOAT32_MAX:
        raise ValueError(
            f"A has weights up to {largest:.3g}: with {A.shape[0]} nodes a path length could "
            f"reach {largest * A.shape[0]:.3g}, beyond float32 ({FLOAT32_MAX:.3g}), in which "
            "the data and the model work; rescale the weights (the shipped checkpoints were "
            "trained on weights in [0, 1])"
        )
    if not algorithm.negative_weights and (A < 0).any():
        allowed = ", ".join(sorted(a.name for a in _REGISTRY.values() if a.negative_weights))
        raise ValueError(
            f"A has negative weights, which {algorithm.name} does not allow (only {allowed} do)"
        )
    n = A.shape[0]
    if algorithm.needs_source:
        if source is None:
            raise ValueError(f"source is required for {algorithm.name}")
        if isinstance(source, bool) or not isinstance(source, (int, np.integer)):
            raise ValueError(f"source must be an integer node index, got {source!r}")
        if not 0 <= int(source) < n:
            raise ValueError(
                f"source={source} is out of range for a graph of {n} nodes (valid: 0..{n - 1})"
            )
        return A, int(source)
    if source is not None:
        raise ValueError(
            f"{algorithm.name} takes no source (CLRS runs it over all nodes); got source={source}"
        )
    return A, 0


def run(name: str, A: np.ndarray, source: int | None = None) -> Trajectory:
    """Execute CLRS algorithm ``name`` on the dense weight matrix ``A`` ([n, n], 0 = no edge).

    Returns a :class:`Trajectory` whose inputs, hints and outputs equal those of
    DeepMind's CLRS reference implementation for the same graph and source.
    """
    algorithm = get_algorithm(name)
    A, s = validate_graph(algorithm, A, source)
    return _trace(algorithm, A, s)


def run_many(
    name: str, graphs: Sequence[np.ndarray], sources: Sequence[int] | None = None
) -> list[Trajectory]:
    """``run`` over many graphs; the same results as calling ``run`` on each."""
    algorithm = get_algorithm(name)
    if sources is not None:
        if isinstance(sources, (str, bytes)) or not hasattr(sources, "__len__"):
            raise ValueError(f"sources must be a sequence of node indices or None, got {sources!r}")
        if len(sources) != len(graphs):
            raise ValueError(f"sources has {len(sources)} entries but graphs has {len(graphs)}")
    out = []
    for i, A in enumerate(graphs):
        try:
            A, s = validate_graph(algorithm, A, None if sources is None else sources[i])
            out.append(_trace(algorithm, A, s))
        except ValueError as err:  # say which graph was rejected
            raise ValueError(f"graphs[{i}]: {err}") from None
    return out


def _trace(algorithm: Algorithm, A: np.ndarray, s: int) -> Trajectory:
    n = A.shape[0]
    inputs = {"pos": positions(n), "A": A, "adj": adjacency(A)}
    if algorithm.needs_source:
        inputs["s"] = mask_one(s, n)
    hints, outputs = algorithm.trace(A, s)
    return Trajectory(algorithm.name, inputs, hints, outputs)

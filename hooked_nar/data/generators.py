"""Seeded random graph generators that return dense weight matrices ``A`` [n, n] (0 = no edge).

Every generator takes ``seed`` (int) or ``rng`` (``numpy.random.Generator``); the same seed
gives the same graph, structure and weights. Shared options:

- ``directed``: undirected graphs are symmetric. A directed graph built from an undirected
  structure (everything but ER) turns each edge ``{i, j}`` into ``i->j``, ``j->i`` or both,
  with probability 1/3 each, so directed cycles exist.
- ``acyclic``: orient every edge from lower to higher rank of a random permutation, giving a
  DAG (implies ``directed``; self-loops are never added).
- ``weighted``: weights uniform in ``(low, high]`` (symmetric when undirected), else 1.
- ``self_loops``: probability that a node gets a self-loop ``A[i, i] != 0``.

:func:`sample_graph` draws the graphs of one CLRS algorithm (see :data:`GRAPH_CONVENTIONS`).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hooked_nar.algorithms import ALGORITHMS, GraphConvention, get_algorithm
from hooked_nar.algorithms.specs import SPECS

__all__ = [
    "GENERATORS",
    "GRAPH_CONVENTIONS",
    "GraphConvention",
    "SELF_LOOP_PROB",
    "CLRS_TRAIN_P",
    "clrs_erdos_renyi",
    "complete",
    "delaunay",
    "er_probability_range",
    "erdos_renyi",
    "grid",
    "make_rng",
    "path",
    "random_tree",
    "sample_graph",
    "sparse_probability",
    "watts_strogatz",
]


def make_rng(
    seed: int | None = None, rng: np.random.Generator | None = None
) -> np.random.Generator:
    """The generator to draw from: ``rng`` if given, else ``numpy.random.default_rng(seed)``."""
    if rng is not None:
        if seed is not None:
            raise ValueError("pass either seed or rng, not both")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        return rng
    return np.random.default_rng(seed)


def _check_n(n: int, minimum: int = 1) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"n must be an integer >= {minimum}, got {n!r}")
    return int(n)


@dataclass(frozen=True)
class _Options:
    """The keyword options every generator shares (module docstring), ``rng`` resolved."""

    rng: np.random.Generator
    directed: bool
    acyclic: bool
    weighted: bool
    low: float
    high: float
    self_loops: float

    def finish(self, und: np.ndarray, *, weighted: bool | None = None) -> np.ndarray:
        """Orient the undirected structure ``und`` (boolean; its upper triangle above the
        diagonal holds the edges, e.g. a symmetric matrix), add self-loops, attach weights."""
        rng, n = self.rng, und.shape[0]
        und = np.triu(und, k=1)
        if self.acyclic:
            rank = rng.permutation(n)  # every edge points from lower to higher rank
            mask = (und | und.T) & (rank[:, None] < rank[None, :])
        elif self.directed:
            choice = rng.integers(0, 3, size=(n, n))  # 0: i->j, 1: j->i, 2: both
            fwd = und & (choice != 1)
            bwd = und & (choice != 0)
            mask = fwd | bwd.T
        else:
            mask = und | und.T
        if self.self_loops > 0 and not self.acyclic:
            loops = rng.random(n) < self.self_loops
            mask = mask | np.diag(loops)
        return self.weigh(mask, directed=self.directed or self.acyclic, weighted=weighted)

    def weigh(
        self, mask: np.ndarray, *, directed: bool, weighted: bool | None = None
    ) -> np.ndarray:
        """Weights on the edges of ``mask`` (1 when unweighted); ``weighted`` overrides the
        option (None: keep it)."""
        n = mask.shape[0]
        if not (self.weighted if weighted is None else weighted):
            return mask.astype(np.float64)
        low, high = self.low, self.high
        if not high > low:
            raise ValueError(f"weights need high > low, got low={low}, high={high}")
        w = high - self.rng.uniform(0.0, high - low, size=(n, n))  # in (low, high]
        if not directed:
            w = np.triu(w) + np.triu(w, k=1).T
        if low < 0 <= high:
            w[w == 0] = high  # a weight of exactly 0 would delete the edge
        return np.where(mask, w, 0.0)


def _generator(build: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """The public generator made from ``build(*args, options: _Options, **kwargs)``.

    It takes ``build``'s own arguments plus the shared keyword options ``directed``,
    ``acyclic``, ``weighted``, ``low``, ``high``, ``self_loops``, ``seed`` and ``rng`` (its
    signature lists both), resolves ``seed`` / ``rng`` with :func:`make_rng` and hands the
    options to ``build`` as ``options``.
    """

    def generator(
        *args: Any,
        directed: bool = False,
        acyclic: bool = False,
        weighted: bool = False,
        low: float = 0.0,
        high: float = 1.0,
        self_loops: float = 0.0,
        seed: int | None = None,
        rng: np.random.Generator | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        rng = make_rng(seed, rng)
        options = _Options(rng, directed, acyclic, weighted, low, high, self_loops)
        return build(*args, options=options, **kwargs)

    shared = inspect.signature(generator).parameters.values()  # before update_wrapper
    own = inspect.signature(build)
    functools.update_wrapper(generator, build)
    generator.__signature__ = own.replace(  # type: ignore[attr-defined]
        parameters=[p for p in own.parameters.values() if p.name != "options"]
        + [p for p in shared if p.kind is inspect.Parameter.KEYWORD_ONLY]
    )
    return generator


def _draw_p(p: float | tuple[float, float], rng: np.random.Generator) -> float:
    if isinstance(p, tuple):
        lo, hi = p
        if not 0 <= lo <= hi <= 1:
            raise ValueError(f"p range must satisfy 0 <= p_low <= p_high <= 1, got {p}")
        return float(rng.uniform(lo, hi))
    if not 0 <= p <= 1:
        raise ValueError(f"p must be a probability in [0, 1], got {p}")
    return float(p)


@_generator
def erdos_renyi(n: int, p: float | tuple[float, float] = 0.5, *, options: _Options) -> np.ndarray:
    """Erdos-Renyi G(n, p) as a dense [n, n] weight matrix.

    ``p`` is the probability of each edge: of each unordered pair when undirected or acyclic,
    of each ordered pair when directed. A tuple ``(p_low, p_high)`` draws ``p`` uniformly
    from that range first.
    """
    n = _check_n(n)
    rng = options.rng
    p = _draw_p(p, rng)
    if options.directed and not options.acyclic:
        mask = (rng.random((n, n)) < p) & ~np.eye(n, dtype=bool)
        if options.self_loops > 0:
            mask |= np.diag(rng.random(n) < options.self_loops)
        return options.weigh(mask, directed=True)
    und = np.triu(rng.random((n, n)) < p, k=1)
    return options.finish(und | und.T)


@_generator
def watts_strogatz(n: int, k: int = 4, p: float = 0.1, *, options: _Options) -> np.ndarray:
    """Watts-Strogatz small world: a ring where each node links to its ``k`` nearest
    neighbours (``k // 2`` per side, clipped to ``n - 1``), then each ring edge ``(i, i+j)``
    is rewired with probability ``p`` to a uniformly chosen non-neighbour of ``i``."""
    n = _check_n(n)
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    rng = options.rng
    und = np.zeros((n, n), dtype=bool)
    half = min(k // 2, (n - 1) // 2)
    for j in range(1, half + 1):
        idx = np.arange(n)
        und[idx, (idx + j) % n] = True
    und = und | und.T
    for j in range(1, half + 1):
        for i in range(n):
            t = (i + j) % n
            if und[i, t] and rng.random() < p:
                free = np.flatnonzero(~und[i])
                free = free[free != i]
                if free.size == 0:
                    continue
                new = int(rng.choice(free))
                und[i, t] = und[t, i] = False
                und[i, new] = und[new, i] = True
    return options.finish(und)


@_generator
def delaunay(n: int, *, euclidean: bool = False, options: _Options) -> np.ndarray:
    """Delaunay triangulation of ``n`` uniform points in the unit square.

    Weights (when ``weighted``) are uniform in ``(low, high]``, or the Euclidean edge
    lengths with ``euclidean=True``. Graphs of fewer than 3 nodes are complete.
    """
    n = _check_n(n)
    points = options.rng.random((n, 2))
    und = np.zeros((n, n), dtype=bool)
    if n < 4:
        und[:] = True  # 1 to 3 points: the triangulation (or a single segment) is complete
    else:
        from scipy.spatial import Delaunay

        tri = Delaunay(points)
        for a, b in ((0, 1), (1, 2), (0, 2)):
            und[tri.simplices[:, a], tri.simplices[:, b]] = True
    np.fill_diagonal(und, False)
    A = options.finish(und | und.T, weighted=options.weighted and not euclidean)
    if options.weighted and euclidean:
        dist = np.linalg.norm(points[:, None, :] - points[None, :, :], axis=-1)
        np.fill_diagonal(dist, options.high)  # self-loops (if any) get the largest weight
        A = np.where(A != 0, dist, 0.0)
    return A


@_generator
def grid(rows: int, cols: int, *, options: _Options) -> np.ndarray:
    """4-neighbour ``rows x cols`` lattice; node ``r * cols + c``."""
    rows, cols = _check_n(rows), _check_n(cols)
    n = rows * cols
    und = np.zeros((n, n), dtype=bool)
    idx = np.arange(n).reshape(rows, cols)
    und[idx[:, :-1].ravel(), idx[:, 1:].ravel()] = True
    und[idx[:-1, :].ravel(), idx[1:, :].ravel()] = True
    return options.finish(und | und.T)


@_generator
def random_tree(n: int, *, options: _Options) -> np.ndarray:
    """Uniformly random labelled tree on ``n`` nodes (decoded from a random Pruefer sequence)."""
    n = _check_n(n)
    und = np.zeros((n, n), dtype=bool)
    if n == 2:
        und[0, 1] = True
    elif n > 2:
        seq = options.rng.integers(0, n, size=n - 2)
        degree = np.ones(n, dtype=np.int64)
        np.add.at(degree, seq, 1)
        for x in seq:
            leaf = int(np.flatnonzero(degree == 1)[0])
            und[leaf, x] = True
            degree[leaf] -= 1
            degree[x] -= 1
        a, b = np.flatnonzero(degree == 1)
        und[a, b] = True
    return options.finish(und | und.T)


@_generator
def path(n: int, *, options: _Options) -> np.ndarray:
    """Path ``0 - 1 - ... - (n-1)``."""
    return options.finish(np.eye(_check_n(n), k=1, dtype=bool))


@_generator
def complete(n: int, *, options: _Options) -> np.ndarray:
    """Complete graph on ``n`` nodes (a complete DAG when ``acyclic``)."""
    return options.finish(~np.eye(_check_n(n), dtype=bool))


# ---------------------------------------------------------------------------------------------
# Per-algorithm conventions of the CLRS samplers.


#: How the CLRS sampler of each algorithm draws its graphs: a view of the registry records.
GRAPH_CONVENTIONS: dict[str, GraphConvention] = {
    name: get_algorithm(name).graph for name in ALGORITHMS
}

#: Probability of a self-loop on each node where the convention allows them (the reference
#: ER graphs have 20-35% of their diagonal set).
SELF_LOOP_PROB = 0.3


def er_probability_range(n: int) -> tuple[float, float]:
    """The range ``sample_graph`` draws the ER edge probability from for ``n`` nodes.

    ``p ~ U(ln(n) / n, 3 ln(n) / n)``, both ends clipped to ``[0.1, 0.5]`` (lower end
    capped at the upper): about the connectivity threshold up to three times it, so graphs
    are rarely empty or complete and stay sparse at 64 and 160 nodes (expected degree
    ~ln(n)..3 ln(n)), as in SALSA-CLRS; at 4-16 nodes this gives ``p`` in 0.17..0.5,
    close to CLRS-30's ``p = 0.5`` (whose undirected edge probability is ``p**2``).
    """
    n = max(int(n), 2)
    base = math.log(n) / n
    hi = min(0.5, max(0.1, 3 * base))
    lo = min(hi, max(0.0, base))
    return lo, hi


def _grid_shape(n: int) -> tuple[int, int]:
    rows = int(math.isqrt(n))
    while n % rows:
        rows -= 1
    return rows, n // rows


def clrs_erdos_renyi(
    n: int,
    p: float,
    rng: np.random.Generator,
    *,
    directed: bool,
    acyclic: bool,
    weighted: bool,
    low: float = 0.0,
    high: float = 1.0,
) -> np.ndarray:
    """Erdos-Renyi exactly as CLRS-30's sampler (``_random_er_graph``) draws it.

    Every entry of ``A`` (diagonal included) is 1 with probability ``p``; an undirected
    graph keeps ``A *= A.T`` (so an edge has probability ``p**2`` and a self-loop ``p``);
    an acyclic one keeps the strict upper triangle, permuted. Weights are uniform in
    ``[low, high)``, and for undirected graphs ``sqrt(w * w.T + 1e-3)``.
    """
    n = _check_n(n)
    mat = rng.binomial(1, p, size=(n, n))
    if not directed:
        mat *= mat.T
    elif acyclic:
        mat = np.triu(mat, k=1)
        perm = rng.permutation(n)
        mat = mat[perm, :][:, perm]
    mat = mat.astype(np.float64)
    if weighted:
        w = rng.uniform(low, high, size=(n, n))
        if not directed:
            w *= w.T
            w = np.sqrt(w + 1e-3)
        mat = mat * w
    return mat


#: Edge probabilities CLRS-30's training script draws from for graph algorithms
#: (``p = 0.1 + 0.1 i``); its test graphs use ``p = 0.5``.
CLRS_TRAIN_P = tuple(round(0.1 * i, 1) for i in range(1, 10))


def sparse_probability(n: int) -> float:
    """SALSA-style sparse edge probability ``2 ln(n) / n`` (capped at 1)."""
    return min(1.0, 2 * math.log(max(n, 2)) / max(n, 2))


def _gen_er(n, rng, **kw):
    return erdos_renyi(n, er_probability_range(n), rng=rng, **kw)


def _gen_sparse(n, rng, **kw):
    return erdos_renyi(n, sparse_probability(n), rng=rng, **kw)


def _clrs_kw(kw: dict) -> dict:
    # CLRS draws self-loops like any other entry, so the self_loops option does not apply.
    return {k: kw[k] for k in ("directed", "acyclic", "weighted")}


def _gen_clrs(n, rng, **kw):
    return clrs_erdos_renyi(n, 0.5, rng, **_clrs_kw(kw))


def _gen_clrs_mixed_p(n, rng, **kw):
    return clrs_erdos_renyi(n, float(rng.choice(CLRS_TRAIN_P)), rng, **_clrs_kw(kw))


def _gen_mixed(n, rng, **kw):
    if rng.random() < 0.5:
        return _gen_clrs_mixed_p(n, rng, **kw)
    return _gen_er(n, rng, **kw)


def _gen_ws(n, rng, **kw):
    k = int(rng.choice([4, 6]))
    return watts_strogatz(n, k=k, p=float(rng.uniform(0.05, 0.3)), rng=rng, **kw)


def _gen_delaunay(n, rng, **kw):
    return delaunay(n, rng=rng, **kw)


def _gen_grid(n, rng, **kw):
    return grid(*_grid_shape(n), rng=rng, **kw)


def _gen_tree(n, rng, **kw):
    return random_tree(n, rng=rng, **kw)


def _gen_path(n, rng, **kw):
    return path(n, rng=rng, **kw)


def _gen_complete(n, rng, **kw):
    return complete(n, rng=rng, **kw)


#: Generator names accepted by :func:`sample_graph` and the datasets.
GENERATORS: dict[str, Callable[..., np.ndarray]] = {
    "er": _gen_er,
    "sparse": _gen_sparse,
    "clrs": _gen_clrs,
    "clrs_mixed_p": _gen_clrs_mixed_p,
    "mixed": _gen_mixed,
    "ws": _gen_ws,
    "delaunay": _gen_delaunay,
    "grid": _gen_grid,
    "tree": _gen_tree,
    "path": _gen_path,
    "complete": _gen_complete,
}


def sample_graph(
    algorithm: str,
    n: int,
    generator: str = "er",
    rng: np.random.Generator | None = None,
    *,
    seed: int | None = None,
) -> tuple[np.ndarray, int | None]:
    """Draw one graph of ``n`` nodes the way the CLRS sampler of ``algorithm`` does.

    Returns ``(A, source)``: ``A`` [n, n] float64 with the algorithm's directed / acyclic /
    weighted / self-loop conventions (:data:`GRAPH_CONVENTIONS`), and a source node drawn
    uniformly when the algorithm takes one (CLRS input ``s``), else ``None``.

    Generators (``generator=``): ``"er"`` (``p`` from :func:`er_probability_range`),
    ``"sparse"`` (ER with ``p = 2 ln(n) / n``, SALSA-style), ``"clrs"`` (CLRS-30's own
    sampler, :func:`clrs_erdos_renyi` with ``p = 0.5``: its test distribution),
    ``"clrs_mixed_p"`` (CLRS's sampler, ``p`` from :data:`CLRS_TRAIN_P`), ``"mixed"``
    (``"clrs_mixed_p"`` or ``"er"`` with probability 1/2 each: dense and sparse graphs),
    ``"ws"`` (Watts-Strogatz, ``k`` in {4, 6}, rewiring ``p ~ U(0.05, 0.3)``),
    ``"delaunay"``, ``"grid"`` (the most square factorisation of ``n``), ``"tree"``,
    ``"path"``, ``"complete"``. Weighted algorithms get weights uniform in (0, 1]; nodes
    get a self-loop with probability :data:`SELF_LOOP_PROB` where the convention allows
    (the CLRS generators keep CLRS's own weights and self-loops instead).
    """
    if algorithm not in GRAPH_CONVENTIONS:
        raise ValueError(
            f"unknown algorithm={algorithm!r}; valid names: {', '.join(GRAPH_CONVENTIONS)}"
        )
    if generator not in GENERATORS:
        raise ValueError(f"unknown generator={generator!r}; valid names: {', '.join(GENERATORS)}")
    n = _check_n(n)
    rng = make_rng(seed, rng)
    conv = GRAPH_CONVENTIONS[algorithm]
    A = GENERATORS[generator](
        n,
        rng,
        directed=conv.directed,
        acyclic=conv.acyclic,
        weighted=conv.weighted,
        self_loops=SELF_LOOP_PROB if conv.self_loops else 0.0,
    )
    spec = SPECS[algorithm].get("s")
    source = int(rng.integers(n)) if spec is not None and spec.stage == "input" else None
    return A, source

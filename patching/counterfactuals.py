"""Counterfactual graphs for patching: one minimal edit of a graph, same node set, with the
whole trajectory (inputs, hints, outputs) recomputed by the algorithm.

>>> cf = make_counterfactual(dataset[0], kind="move_source", seed=0)
>>> cf.clean, cf.corrupted          # PyG Data, same nodes; corrupted is a CLRS execution
>>> cf.edit                         # {"kind": "move_source", "source": [3, 5], ...}

Kinds:

- ``"move_source"``: another source node (algorithms with a source input ``s``);
- ``"remove_edge"``: delete one edge that is not a self-loop (both directions where the
  algorithm's graphs are undirected, see ``GRAPH_CONVENTIONS``); ``edge_index`` loses it;
- ``"perturb_weight"``: give one edge a new weight (weighted algorithms only; both
  directions where undirected); ``edge_index`` is unchanged.

Unless the edit is given (``source=``, ``edge=``, ``weight=``), up to ``max_candidates``
candidate edits are tried in an order drawn from ``seed`` and the first one is kept that
(1) changes the ground-truth outputs and (2) keeps the trajectory length (so every processor
step of one run has a partner in the other), in that order of priority. The result is a
:class:`Counterfactual` dataclass rather than an attribute on ``Data`` (a dict on a PyG
``Data`` would not batch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from hooked_nar.algorithms import SPECS, run
from hooked_nar.algorithms.registry import get_algorithm
from hooked_nar.data.convert import data_to_trajectory, trajectory_to_data
from hooked_nar.data.generators import GRAPH_CONVENTIONS

__all__ = ["KINDS", "Counterfactual", "make_counterfactual"]

#: The edits :func:`make_counterfactual` knows.
KINDS = ("move_source", "remove_edge", "perturb_weight")


@dataclass
class Counterfactual:
    """A clean graph and its counterfactual (``corrupted``), with what was edited.

    ``edit``: JSON-able record: ``kind``, the edit (``source: [old, new]``; ``edge: [i, j]``
    and ``symmetric``; ``weight: [old, new]``), ``length: [T_clean, T_corrupted]``,
    ``changed_output`` (any output differs) and ``seed``. ``changed_nodes`` ``[N]`` bool:
    nodes whose node-located outputs (e.g. the parent ``pi``) differ.
    """

    clean: Data
    corrupted: Data
    kind: str
    edit: dict[str, Any]
    changed_nodes: Tensor = field(repr=False)

    @property
    def changed_output(self) -> bool:
        """Whether the edit changed the algorithm's output."""
        return bool(self.edit["changed_output"])

    def as_dict(self) -> dict[str, Any]:
        """The edit's description and the changed nodes' indices as a JSON-ready dict."""
        return {**self.edit, "changed_nodes": self.changed_nodes.nonzero().flatten().tolist()}


def _outputs_differ(a: dict, b: dict) -> bool:
    return any(not np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def _edges(A: np.ndarray, symmetric: bool) -> list[tuple[int, int]]:
    """Non-self-loop edges; one (i < j) per undirected pair when ``symmetric``."""
    ii, jj = np.nonzero(A)
    out = set()
    for i, j in zip(ii.tolist(), jj.tolist(), strict=True):
        if i == j:
            continue
        out.add((min(i, j), max(i, j)) if symmetric else (i, j))
    return sorted(out)


def _set(A: np.ndarray, edge: tuple[int, int], value: float, symmetric: bool) -> np.ndarray:
    A = A.copy()
    i, j = edge
    A[i, j] = value
    if symmetric and A[j, i] != 0:
        A[j, i] = value
    return A


def _round(w: float, data: Data) -> float:
    """``w`` as the graph's weight dtype stores it (so the recomputed trajectory is exact)."""
    dtype = data.A.dtype if data.A.is_floating_point() else torch.float32
    return float(torch.tensor(w, dtype=dtype))


def make_counterfactual(
    data: Data,
    kind: str = "move_source",
    seed: int = 0,
    *,
    source: int | None = None,
    edge: tuple[int, int] | None = None,
    weight: float | None = None,
    max_candidates: int = 256,
) -> Counterfactual:
    """A counterfactual of one CLRS graph ``data`` (a ``Data`` of a ``CLRSDataset``).

    ``kind``: ``"move_source"`` | ``"remove_edge"`` | ``"perturb_weight"`` (module
    docstring). ``source`` / ``edge`` / ``weight`` fix the edit instead of searching
    (``weight`` alone fixes the new weight and searches the edge); a fixed edit is kept even
    if it leaves the outputs unchanged (``cf.changed_output`` says). New weights are drawn in
    ``(0, max(1, max weight)]``. The counterfactual's inputs, hints and outputs are those of
    ``hooked_nar.algorithms.run`` on the edited graph, converted with ``trajectory_to_data``.
    Raises ``ValueError`` for a kind the algorithm has no use for (``move_source`` without a
    source, ``perturb_weight`` on an unweighted algorithm such as BFS) or a graph with
    nothing to edit.
    """
    if isinstance(data, Batch) or not isinstance(data, Data):
        raise TypeError(
            f"data must be one graph (a PyG Data), got {type(data).__name__}; "
            "use batch.get_example(i) for a graph of a batch"
        )
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} must be one of {', '.join(KINDS)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int, got {seed!r}")
    traj = data_to_trajectory(data)
    alg = traj.algorithm
    algorithm = get_algorithm(alg)
    convention = GRAPH_CONVENTIONS[alg]
    symmetric = not convention.directed
    A = np.asarray(traj.inputs["A"], dtype=np.float64)
    n = A.shape[0]
    s = int(np.argmax(traj.inputs["s"])) if algorithm.needs_source else None
    clean = run(alg, A, s)  # recomputed from the stored (float32) weights
    rng = np.random.default_rng(seed)

    # candidate edits: (A', source', record)
    candidates: list[tuple[np.ndarray, int | None, dict]] = []
    fixed = False
    if kind == "move_source":
        if not algorithm.needs_source:
            raise ValueError(f"kind='move_source' needs an algorithm with a source; {alg} has none")
        if edge is not None or weight is not None:
            raise ValueError("kind='move_source' takes source=, not edge= or weight=")
        if source is not None:
            if isinstance(source, bool) or not isinstance(source, (int, np.integer)):
                raise ValueError(f"source must be a node index, got {source!r}")
            if not 0 <= source < n or source == s:
                raise ValueError(
                    f"source={source} must be a node 0..{n - 1} other than the current source {s}"
                )
            new_sources = [int(source)]
            fixed = True
        else:
            if n < 2:
                raise ValueError("kind='move_source' needs a graph with at least 2 nodes")
            new_sources = [int(v) for v in rng.permutation(n) if v != s]
        candidates = [(A, v, {"source": [s, v]}) for v in new_sources]
    else:
        if source is not None:
            raise ValueError(f"kind={kind!r} takes edge= (and weight=), not source=")
        if kind == "perturb_weight" and not convention.weighted:
            raise ValueError(
                f"kind='perturb_weight' makes no sense for {alg}: its graphs are unweighted "
                "(use 'remove_edge' or 'move_source')"
            )
        if kind == "remove_edge" and weight is not None:
            raise ValueError("kind='remove_edge' takes no weight=")
        edges = _edges(A, symmetric)
        if edge is not None:
            i, j = (int(x) for x in edge)
            key = (min(i, j), max(i, j)) if symmetric else (i, j)
            if i == j or key not in edges:
                raise ValueError(
                    f"edge={tuple(edge)} is not an edge (self-loops excluded) of this graph"
                )
            edges = [key]
            fixed = weight is not None or kind == "remove_edge"
        if not edges:
            raise ValueError(f"kind={kind!r}: the graph has no edge besides self-loops")
        order = rng.permutation(len(edges)) if len(edges) > 1 else [0]
        high = max(1.0, float(np.abs(A).max()))
        for e in (edges[k] for k in order):
            record: dict[str, Any] = {"edge": list(e), "symmetric": symmetric}
            if kind == "remove_edge":
                candidates.append((_set(A, e, 0.0, symmetric), s, record))
                continue
            old = float(A[e])
            if weight is not None:
                if not np.isfinite(weight) or weight == 0:
                    raise ValueError(
                        f"weight={weight!r} must be finite and nonzero (0 deletes the edge)"
                    )
                news = [float(weight)]
            else:
                news = [float(w) for w in high * (1.0 - rng.random(3))]
            news = [_round(w, data) for w in news]
            news = [w for w in news if w != old]
            for w in news:
                candidates.append((_set(A, e, w, symmetric), s, {**record, "weight": [old, w]}))
    if not candidates:
        raise ValueError(f"kind={kind!r}: no edit changes the graph (weight equal to the old one?)")
    candidates = candidates[: max(1, int(max_candidates))]

    best, best_key = None, None
    for A2, s2, record in candidates:
        try:
            traj2 = run(alg, A2, s2)
        except ValueError as err:
            raise ValueError(f"make_counterfactual({kind!r}): {err}") from None
        key = (_outputs_differ(clean.outputs, traj2.outputs), traj2.length == clean.length)
        if best_key is None or key > best_key:
            best, best_key = (traj2, record), key
        if key == (True, True) or fixed:
            break
    traj2, record = best
    dtype = data.A.dtype if data.A.is_floating_point() else torch.float32
    corrupted = trajectory_to_data(traj2, dtype=dtype)
    changed_nodes = torch.zeros(n, dtype=torch.bool)
    for name, fs in SPECS[alg].items():
        if fs.stage == "output" and fs.location == "node":
            old = np.asarray(clean.outputs[name]).reshape(n, -1)
            new = np.asarray(traj2.outputs[name]).reshape(n, -1)
            changed_nodes |= torch.from_numpy((old != new).any(1))
    edit = {
        "kind": kind,
        **record,
        "length": [int(clean.length), int(traj2.length)],
        "changed_output": bool(best_key[0]),
        "seed": int(seed),
    }
    return Counterfactual(data, corrupted, kind, edit, changed_nodes)

"""Where to put the nodes: a deterministic layout per graph, reused across figures."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hooked_nar.figures.backend import as_numpy

__all__ = ["graph_layout", "networkx_graph"]


def networkx_graph(A: np.ndarray, directed: bool):
    """The networkx graph of the nonzero entries of ``A`` [n, n], self-loops left out."""
    import networkx as nx

    n = A.shape[0]
    G = nx.DiGraph() if directed else nx.Graph()
    G.add_nodes_from(range(n))
    ii, jj = np.nonzero(A)
    G.add_edges_from((int(i), int(j)) for i, j in zip(ii, jj, strict=True) if i != j)
    return G


def graph_layout(A: Any, seed: int = 0) -> np.ndarray:
    """Node positions ``[n, 2]`` for the graph with weight matrix ``A`` (reuse across figures).

    Kamada-Kawai per connected component (deterministic, readable for small graphs),
    components packed side by side; a seeded spring layout above 60 nodes.
    """
    import networkx as nx

    A = as_numpy(A)
    n = A.shape[0]
    G = networkx_graph((A != 0) | (A.T != 0), directed=False)
    if n > 60:
        pos = nx.spring_layout(G, seed=seed, iterations=200)
        return np.array([pos[i] for i in range(n)], dtype=float)
    out = np.zeros((n, 2))
    comps = sorted(nx.connected_components(G), key=lambda c: (-len(c), min(c)))
    rng = np.random.default_rng(seed)
    x0 = 0.0
    singles: list[int] = []
    for comp in comps:
        nodes = sorted(comp)
        if len(nodes) == 1:
            singles.append(nodes[0])
            continue
        sub = G.subgraph(nodes)
        init = {v: rng.normal(size=2) for v in nodes}
        pos = nx.kamada_kawai_layout(sub, pos=init)
        xy = np.array([pos[v] for v in nodes])
        xy -= xy.min(0)
        scale = math.sqrt(len(nodes)) / max(float(xy.max()), 1e-9)
        xy = _spread(xy * scale, min_dist=0.95)
        xy -= xy.min(0)
        xy[:, 0] += x0
        out[nodes] = xy
        x0 = float(xy[:, 0].max()) + 1.0
    if singles:  # isolated nodes in a column to the right
        height = max(float(out[:, 1].max()), 1.0) if x0 > 0 else 1.0
        for k, v in enumerate(singles):
            out[v] = (x0, height * (k / max(len(singles) - 1, 1)))
    return out


def _spread(xy: np.ndarray, min_dist: float, iterations: int = 60) -> np.ndarray:
    """Push apart nodes closer than ``min_dist`` (layouts put unrelated nodes on top of
    each other now and then), moving each pair symmetrically along their axis."""
    xy = xy.copy()
    for _ in range(iterations):
        diff = xy[:, None] - xy[None]
        dist = np.sqrt((diff**2).sum(-1)) + np.eye(len(xy))
        overlap = np.clip(min_dist - dist, 0, None)
        np.fill_diagonal(overlap, 0)
        if not overlap.any():
            break
        push = (diff / dist[..., None] * overlap[..., None] * 0.5).sum(1)
        xy += push
    return xy

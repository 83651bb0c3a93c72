"""Statistics of causal claims, reusable by any experiment that compares an effect with a null.

The unit drawn independently is the graph, so every interval resamples graphs. A null is a
*distribution* of interventions (``K`` null units, each measured on the same ``G`` graphs as
the tested unit), never one averaged control:

- :func:`bootstrap_ci`: percentile interval of a mean over graphs (the core's primitive,
  :mod:`hooked_nar.stats`, re-exported here beside the statistics built on it).
- :func:`paired_difference`: per-graph differences ``effect - mean(null)`` with an interval
  that resamples graphs *and* null units together, so the spread across null units counts.
- :func:`rank_p_value`: exact rank (permutation) p-value of the tested unit's mean effect
  among the null units' mean effects: ``(1 + #{null >= effect}) / (1 + K)``. Its smallest
  possible value is ``1 / (K + 1)``: :func:`null_size_for` says how large ``K`` must be for a
  run of ``m`` Holm-corrected comparisons to be able to reach ``alpha``.
- :func:`holm`: Holm-Bonferroni adjusted p-values across every comparison of a run.

Every function takes a ``seed`` where it draws and returns the same numbers for the same seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from hooked_nar.stats import bootstrap_ci, percentile_interval

__all__ = [
    "PairedDifference",
    "bootstrap_ci",
    "holm",
    "null_size_for",
    "paired_difference",
    "rank_p_value",
]


@dataclass(frozen=True)
class PairedDifference:
    """``effect - null`` on the same graphs: ``mean`` of the per-graph differences,
    ``ci`` its bootstrap interval (graphs and null units resampled), ``per_graph`` [G]."""

    mean: float
    ci: tuple[float, float]
    per_graph: list[float]


def paired_difference(
    effect: Float[Tensor, " G"],
    null: Float[Tensor, "K G"],
    num_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """Per-graph ``effect[g] - mean_k null[k, g]`` and a bootstrap interval of its mean that
    draws graphs and null units with replacement in every resample (a graph missing a value,
    NaN, is dropped from both)."""
    e = torch.as_tensor(effect, dtype=torch.float64).flatten()
    n = torch.as_tensor(null, dtype=torch.float64).reshape(-1, e.numel())
    if n.shape[0] == 0:
        raise ValueError("null must hold at least one null unit")
    keep = ~torch.isnan(e) & ~torch.isnan(n).any(0)
    e, n = e[keep], n[:, keep]
    diff = e - n.mean(0)
    if e.numel() == 0:
        return PairedDifference(math.nan, (math.nan, math.nan), [])
    gen = torch.Generator().manual_seed(seed)
    G, K = e.numel(), n.shape[0]
    graph_counts = torch.zeros(num_resamples, G, dtype=torch.float64)
    unit_counts = torch.zeros(num_resamples, K, dtype=torch.float64)
    ones = torch.ones(num_resamples, max(G, K), dtype=torch.float64)
    graph_counts.scatter_add_(1, torch.randint(G, (num_resamples, G), generator=gen), ones[:, :G])
    unit_counts.scatter_add_(1, torch.randint(K, (num_resamples, K), generator=gen), ones[:, :K])
    effect_means = graph_counts @ e / G
    null_means = ((unit_counts @ n) * graph_counts).sum(1) / (K * G)
    samples = effect_means - null_means
    return PairedDifference(float(diff.mean()), percentile_interval(samples, level), diff.tolist())


def rank_p_value(effect: float, null: Float[Tensor, " K"], alternative: str = "greater") -> float:
    """Exact rank p-value of ``effect`` among the ``K`` null values (NaN dropped):
    ``(1 + #{null >= effect}) / (1 + K)`` (``alternative="less"``: ``null <= effect``).
    NaN when ``effect`` is NaN or the null is empty."""
    if alternative not in ("greater", "less"):
        raise ValueError(f"alternative must be 'greater' or 'less', got {alternative!r}")
    x = torch.as_tensor(null, dtype=torch.float64).flatten()
    x = x[~torch.isnan(x)]
    if math.isnan(effect) or x.numel() == 0:
        return math.nan
    hits = (x >= effect) if alternative == "greater" else (x <= effect)
    return (1 + int(hits.sum())) / (1 + x.numel())


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order; NaN stays NaN and is not counted):
    the i-th smallest of m becomes ``max_{j<=i} min(1, (m - j + 1) p_(j))``."""
    p = [float(x) for x in p_values]
    idx = sorted((i for i, x in enumerate(p) if not math.isnan(x)), key=lambda i: p[i])
    m, out, running = len(idx), [math.nan] * len(p), 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def null_size_for(num_comparisons: int, alpha: float = 0.05) -> int:
    """The smallest number of null units whose rank p-value can pass Holm at ``alpha`` for
    the first of ``num_comparisons`` comparisons: ``1 / (K + 1) * m <= alpha / 1.25`` (a
    margin of 25% so that a unit beating every null unit is clearly significant)."""
    if num_comparisons < 1 or not 0 < alpha < 1:
        raise ValueError("num_comparisons must be >= 1 and alpha in (0, 1)")
    return math.ceil(1.25 * num_comparisons / alpha) - 1

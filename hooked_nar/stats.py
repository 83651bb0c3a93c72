"""Bootstrap intervals over graphs: the one statistical primitive of the project.

The unit drawn independently is the graph, so every interval resamples graphs with
replacement. The core uses it for evaluation intervals (:mod:`hooked_nar.evaluate`);
:mod:`patching.stats` builds the statistics of causal claims (paired differences against a
null, rank p-values, Holm) on it. Every function that draws takes a ``seed`` and returns the
same numbers for the same seed.

>>> lo, hi = bootstrap_ci(per_graph_accuracy)          # [G] -> 95% interval of the mean
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float, Int
from torch import Tensor

__all__ = ["bootstrap_ci", "percentile_interval", "resample_graphs"]


def resample_graphs(
    num_graphs: int, num_resamples: int = 1000, seed: int = 0
) -> Int[Tensor, "resamples graphs"]:
    """Graph indices drawn with replacement: row r is bootstrap resample r of ``num_graphs``
    graphs (a generator seeded by ``seed``)."""
    if isinstance(num_resamples, bool) or not isinstance(num_resamples, int) or num_resamples < 1:
        raise ValueError(f"num_resamples must be a positive int, got {num_resamples!r}")
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(num_graphs, (num_resamples, num_graphs), generator=gen)


def percentile_interval(
    samples: Float[Tensor, " resamples"], level: float = 0.95
) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap ``samples``."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    lo, hi = torch.quantile(samples.double(), q)
    return float(lo), float(hi)


def bootstrap_ci(
    per_graph: Float[Tensor, " graphs"],
    num_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``per_graph`` (graphs resampled; NaN
    entries dropped; ``(nan, nan)`` when none is left)."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    x = torch.as_tensor(per_graph, dtype=torch.float64).flatten()
    x = x[~torch.isnan(x)]
    if x.numel() == 0:
        return math.nan, math.nan
    pick = resample_graphs(x.numel(), num_resamples, seed)
    return percentile_interval(x[pick].mean(1), level)

"""A learned circuit mask: the mask-based family that MIB finds most faithful, beside the
attribution scores of :mod:`patching.circuits.scoring`.

Every component c gets a logit ``theta_c``; the model runs with each activation moved
``1 - sigmoid(theta_c)`` of the way to its reference (:mod:`patching.circuits.ablation`),
and Adam minimises

    mean over graphs of ((metric - metric_clean) / |metric_clean - metric_empty|)^2
    + sparsity * mean_c sigmoid(sharpness * theta_c)

so the kept components reproduce the full model's metric while as few as possible stay
on. The result is a :class:`~patching.circuits.scoring.Scores` whose "effect" is
``-sigmoid(theta)`` (rank = keep probability): top-k circuits and faithfulness curves then
treat it like any other score, on held-out graphs.
"""

from __future__ import annotations

import torch

from patching.circuits.ablation import AblationRuns
from patching.circuits.components import Components
from patching.circuits.scoring import Scores

__all__ = ["learned_mask_scores"]


def learned_mask_scores(
    runs: AblationRuns,
    components: Components,
    steps: int = 300,
    lr: float = 0.1,
    sparsity: float = 1.0,
    seed: int = 0,
    objective: str | None = None,
    anneal: float = 10.0,
) -> Scores:
    """Learn keep probabilities of ``components`` on ``runs``' graphs (module docstring).

    ``objective``: the metric of ``runs`` to preserve (default: its first); ``anneal``: the
    final sharpness of ``sigmoid(sharpness * theta)``, raised linearly from 1 so the mask
    ends close to binary (what a top-k circuit is)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not (lr > 0 and sparsity >= 0 and anneal >= 1):
        raise ValueError(f"need lr > 0, sparsity >= 0, anneal >= 1; got {lr}, {sparsity}, {anneal}")
    name = objective or next(iter(runs.metrics))
    if name not in runs.metrics:
        raise ValueError(f"objective={objective!r} is not a metric of runs: {list(runs.metrics)}")
    C = len(components)
    with torch.no_grad():
        empty = runs.run(components.masks(torch.ones(1, C, dtype=torch.bool)))[name][0]
    clean = runs.clean_values[name]
    scale = (clean - empty).abs().clamp(min=1e-3 * float((clean - empty).abs().max()) + 1e-12)
    gen = torch.Generator().manual_seed(seed)
    theta = (3.0 + 0.01 * torch.randn(C, generator=gen)).requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    for i in range(steps):
        sharpness = 1.0 + (anneal - 1.0) * i / max(1, steps - 1)  # towards a binary mask
        keep = torch.sigmoid(theta * sharpness)
        value = runs.run(components.expand((1 - keep)[None]), grad=True)[name][0]
        loss = (((value - clean) / scale) ** 2).nanmean() + sparsity * keep.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    keep = torch.sigmoid(theta.detach() * anneal).double()
    per_graph = -keep[None].expand(runs.num_graphs, C).clone()
    return Scores("mask", components, per_graph, runs.metrics[name].name, None)

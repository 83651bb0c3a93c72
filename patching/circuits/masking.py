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

:func:`refine_top_k` then improves the top-k circuit of any ranking by greedy swaps judged
with the exact ablation (a unit drops out only when one that helps more comes in).
"""

from __future__ import annotations

import torch

from patching.circuits.ablation import AblationRuns
from patching.circuits.components import Components
from patching.circuits.faithfulness import top_k_circuit
from patching.circuits.scoring import Scores

__all__ = ["learned_mask_scores", "refine_top_k"]


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


def refine_top_k(
    runs: AblationRuns,
    scores: Scores,
    k: int,
    objective: str | None = None,
    max_swaps: int = 8,
    batch_size: int = 64,
) -> Scores:
    """``scores`` re-ranked so that its top-k circuit is improved by greedy swaps.

    The circuit-only model (everything else ablated, :meth:`AblationRuns.run`) is judged on
    ``runs``' graphs by the mask's loss, ``mean over graphs ((metric - metric_full) /
    |metric_full - metric_empty|)^2`` of ``objective``. Each swap drops the member whose
    removal costs least and brings in the outsider that then helps most, if the pair lowers
    the loss and the newcomer lowers it on its own (a unit that changes nothing never comes
    in); ``k + (C - k)`` patched runs per swap, at most ``max_swaps`` swaps. The result
    ranks the refined circuit first, each part in ``scores``' order, so its top-k is the
    refined circuit and smaller and larger circuits nest around it.
    """
    components = scores.components
    C = len(components)
    if isinstance(k, bool) or not isinstance(k, int) or not 0 < k < C:
        raise ValueError(f"k must be an int in 1..{C - 1}, got {k!r}")
    if isinstance(max_swaps, bool) or not isinstance(max_swaps, int) or max_swaps < 0:
        raise ValueError(f"max_swaps must be an int >= 0, got {max_swaps!r}")
    name = objective or next(iter(runs.metrics))
    if name not in runs.metrics:
        raise ValueError(f"objective={objective!r} is not a metric of runs: {list(runs.metrics)}")
    clean = runs.clean_values[name].double()
    scale = (clean - _with_everything_ablated(runs, components, name)).abs()
    scale = scale.clamp(min=1e-3 * float(scale.max()) + 1e-12)

    @torch.no_grad()
    def loss(kept: torch.Tensor) -> torch.Tensor:  # [B, C] circuits -> [B]
        parts = []
        for start in range(0, len(kept), batch_size):
            value = runs.run(components.masks(~kept[start : start + batch_size]))[name]
            parts.append(value.double())
        value = torch.cat(parts)
        return (((value - clean) / scale) ** 2).nanmean(1)

    circuit = top_k_circuit(scores, k)
    current = float(loss(circuit[None])[0])
    for _ in range(max_swaps):
        members, outsiders = circuit.nonzero().flatten(), (~circuit).nonzero().flatten()
        without = circuit[None].repeat(len(members), 1)
        without[torch.arange(len(members)), members] = False
        dropped = loss(without)
        out = members[dropped.argmin()]
        trial = circuit.clone()
        trial[out] = False
        with_one = trial[None].repeat(len(outsiders), 1)
        with_one[torch.arange(len(outsiders)), outsiders] = True
        losses = loss(with_one)
        # the newcomer must help on its own: one that changes nothing never comes in
        if float(losses.min()) >= min(current, float(dropped.min())):
            break
        trial[outsiders[losses.argmin()]] = True
        circuit, current = trial, float(losses.min())
    order = scores.ranking()
    ranked = torch.cat([order[circuit[order]], order[~circuit[order]]])
    per_graph = torch.zeros(runs.num_graphs, C, dtype=torch.float64)
    per_graph[:, ranked] = -torch.linspace(1.0, 1.0 / C, C, dtype=torch.float64)
    return Scores(scores.method, components, per_graph, scores.metric, None)


@torch.no_grad()
def _with_everything_ablated(runs: AblationRuns, components: Components, name: str) -> torch.Tensor:
    """``name`` per graph with every component ablated ``[G]``."""
    everything = torch.ones(1, len(components), dtype=torch.bool)
    return runs.run(components.masks(everything))[name][0].double()

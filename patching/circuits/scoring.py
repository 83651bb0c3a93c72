"""Scores of components: exact patching, EAP and EAP-IG, on the same footing.

Every method estimates, per graph, the change of the metric when a component alone takes
its reference activation (:mod:`patching.circuits.ablation`) on the clean run:
``effect[g, c] = metric(clean with c ablated) - metric(clean)``, in the metric's units
(negative: ablating it hurts).

- :func:`exact_scores`: one patched forward per component (K per pass), the reference;
- :func:`eap_scores`: edge attribution patching (Syed et al. 2023; Nanda's attribution
  patching): ``(reference - clean) . grad metric`` at the clean run, one backward pass;
- :func:`eap_ig_scores`: EAP with integrated gradients (Hanna et al. 2024; Marks et al.'s
  activation variant as in MIB): the gradient averaged over ``ig_steps`` points on the
  straight path from the clean to the reference activations of one site, the site replaced
  at every step at once; one batched pass per site. The attributions of a site add up to
  the effect of ablating the whole site (completeness), up to the quadrature error.

Each returns a :class:`Scores` ``[G, C]`` for a :class:`~patching.circuits.components.Components`;
aggregation over graphs is explicit (:meth:`Scores.mean`, :meth:`Scores.normalised`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from hooked_nar.data.loader import collate
from patching.circuits.ablation import AblationRuns
from patching.circuits.components import Components
from patching.circuits.sites import site_hooks

__all__ = ["Scores", "eap_scores", "eap_ig_scores", "exact_scores", "spearman_agreement"]


@dataclass
class Scores:
    """Per-graph effect estimates ``per_graph`` ``[G, C]`` of ``method`` for
    ``components``; ``gap`` ``[G]``: metric(clean) - metric(reference run) when the reference
    is a counterfactual run (the scale effects are normalised by), else None."""

    method: str
    components: Components
    per_graph: Float[Tensor, "G C"]
    metric: str
    gap: Tensor | None = None

    def mean(self) -> Float[Tensor, " C"]:
        """Mean effect over graphs (metric units)."""
        return self.per_graph.double().nanmean(0)

    def normalised(self) -> Float[Tensor, " C"]:
        """Effect as a fraction of the clean-reference gap, a ratio of sums over graphs
        (``-1``: the component alone destroys the whole gap); the mean when there is no
        gap (non-counterfactual references)."""
        if self.gap is None:
            return self.mean()
        return self.per_graph.double().nansum(0) / self.gap.double().nansum().clamp(min=1e-12)

    def ranking(self) -> Tensor:
        """Component indices by decreasing ``|mean effect|`` (stable; NaN last)."""
        return self.mean().abs().nan_to_num(-1.0).argsort(descending=True, stable=True)


def _progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else bool(progress)


def _metric_name(runs: AblationRuns) -> str:
    return next(iter(runs.metrics))


def _gap(runs: AblationRuns) -> Tensor | None:
    if runs.reference_values is None:
        return None
    name = _metric_name(runs)
    return (runs.clean_values[name] - runs.reference_values[name]).double()


def eap_scores(runs: AblationRuns, components: Components) -> Scores:
    """EAP: ``(reference - clean) * d metric / d activation`` at the clean run, summed
    into components."""
    model, name = runs.model, _metric_name(runs)
    metric = runs.metrics[name]
    if not getattr(metric, "differentiable", True):
        raise ValueError(f"metric {metric.name} is not differentiable; EAP needs gradients")
    leaves: dict[str, list[Tensor]] = {s.name: [None] * runs.S for s in runs.sites}

    def plant(site: str):
        def fn(x: Tensor, t: int) -> Tensor:
            if not x.requires_grad:  # e.g. the zero state before step 0
                x = x.detach().requires_grad_(True)
            leaves[site][t] = x  # not detached: gradients reach upstream sites through it
            return x

        return fn

    was = model.training
    model.eval()
    try:
        with torch.enable_grad(), site_hooks(model, {s: plant(s) for s in leaves}, runs.S):
            logits = model(runs.batch)
            total = torch.nansum(metric(logits, runs.batch))
        flat = [leaf for site in leaves for leaf in leaves[site]]
        grads = torch.autograd.grad(total, flat, allow_unused=True)
    finally:
        model.train(was)
    attribution, i = {}, 0
    for site in leaves:
        g = torch.stack(
            [
                torch.zeros_like(f) if gr is None else gr
                for f, gr in zip(flat[i : i + runs.S], grads[i : i + runs.S], strict=True)
            ]
        )
        i += runs.S
        attribution[site] = runs.delta(site) * g.cpu()
    per_graph = components.aggregate(attribution, runs.row_graphs(), runs.num_graphs)
    return Scores("eap", components, per_graph, metric.name, _gap(runs))


IG_SCOPES = ("site", "step")


def eap_ig_scores(
    runs: AblationRuns, components: Components, ig_steps: int = 8, scope: str = "step"
) -> Scores:
    """EAP-IG: gradients at ``ig_steps`` midpoints ``a = (j + 1/2) / ig_steps`` of the path
    ``clean + a * (reference - clean)``, averaged and multiplied by ``reference - clean``.

    ``scope``: what moves along the path while the rest of the model computes: ``"step"``
    (one site at one step; the attribution of step t is read from the runs that move step
    t) or ``"site"`` (one site at every step at once; cheaper, but the path then crosses
    interactions between steps that a single component's ablation never sees).
    """
    if isinstance(ig_steps, bool) or not isinstance(ig_steps, int) or ig_steps < 1:
        raise ValueError(f"ig_steps must be a positive int, got {ig_steps!r}")
    if scope not in IG_SCOPES:
        raise ValueError(f"scope={scope!r} must be one of {IG_SCOPES}")
    model, name = runs.model, _metric_name(runs)
    metric = runs.metrics[name]
    if not getattr(metric, "differentiable", True):
        raise ValueError(f"metric {metric.name} is not differentiable; EAP-IG needs gradients")
    S, K = runs.S, ig_steps
    alphas = (torch.arange(K, dtype=torch.float32) + 0.5) / K
    # copies: (moved step u, alpha j) for scope "step"; (alpha j) for scope "site"
    U = S if scope == "step" else 1
    big = collate(runs.clean * (U * K), device=model.device)
    attribution = {}
    was = model.training
    model.eval()
    try:
        for site in runs.sites:
            clean, delta = runs.clean_acts[site.name], runs.delta(site.name)
            R, d = clean.shape[1], clean.shape[2]
            coef = alphas.repeat(U).view(U, K)  # [U, K]
            leaves = []
            for t in range(S):
                moved = coef if scope == "site" else coef * (torch.arange(U) == t)[:, None]
                value = clean[t] + moved[..., None, None] * delta[t]  # [U, K, R, d]
                leaves.append(value.reshape(U * K * R, d).clone().requires_grad_(True))

            def fn(x: Tensor, t: int, leaves=leaves) -> Tensor:
                return leaves[t].to(x)

            with torch.enable_grad(), site_hooks(model, {site.name: fn}, S):
                logits = model(big)
                total = torch.nansum(metric(logits, big))
            grads = torch.autograd.grad(total, leaves, allow_unused=True)
            per_step = []
            for t, gr in enumerate(grads):
                gr = torch.zeros(U * K * R, d) if gr is None else gr
                gr = gr.view(U, K, R, d)[t if scope == "step" else 0]
                per_step.append(gr.mean(0))
            attribution[site.name] = delta * torch.stack(per_step)
    finally:
        model.train(was)
    per_graph = components.aggregate(attribution, runs.row_graphs(), runs.num_graphs)
    return Scores(f"eap_ig({ig_steps}, {scope})", components, per_graph, metric.name, _gap(runs))


def exact_scores(
    runs: AblationRuns,
    components: Components,
    batch_size: int = 64,
    progress: bool | None = None,
) -> Scores:
    """Exact patching: the metric with each component alone ablated, minus the clean
    metric, per graph; ``batch_size`` components per forward pass."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    name = _metric_name(runs)
    C = len(components)
    out = []
    with tqdm(total=C, desc="exact patching", disable=not _progress(progress), leave=False) as bar:
        for start in range(0, C, batch_size):
            ids = torch.arange(start, min(C, start + batch_size))
            selected = torch.zeros(len(ids), C, dtype=torch.bool)
            selected[torch.arange(len(ids)), ids] = True
            values = runs.run(components.masks(selected))[name].detach()  # [k, G]
            out.append(values.double() - runs.clean_values[name].double()[None])
            bar.update(len(ids))
    per_graph = torch.cat(out).T.contiguous()  # [G, C]
    return Scores("exact", components, per_graph, runs.metrics[name].name, _gap(runs))


def spearman_agreement(
    estimate: Scores, exact: Scores, threshold: float = 0.01
) -> dict[str, float | int]:
    """Spearman correlation of ``estimate`` with ``exact`` mean effects over the components
    that matter: ``|exact| > threshold * max |exact|`` (exact zeros never count); also over
    every component with a nonzero exact effect, and the count of each."""
    from scipy.stats import spearmanr

    x, y = estimate.mean(), exact.mean()
    if x.shape != y.shape:
        raise ValueError(f"the scores cover {x.numel()} and {y.numel()} components")
    finite = torch.isfinite(x) & torch.isfinite(y)
    scale = float(y[finite].abs().max()) if finite.any() else 0.0
    matter = finite & (y.abs() > threshold * scale) & (y != 0)
    nonzero = finite & (y != 0)

    def rho(mask: Tensor) -> float:
        if int(mask.sum()) < 3:
            return float("nan")
        return float(spearmanr(x[mask].numpy(), y[mask].numpy()).statistic)

    return {
        "spearman": rho(matter),
        "components": int(matter.sum()),
        "spearman_nonzero": rho(nonzero),
        "nonzero": int(nonzero.sum()),
        "threshold": threshold,
    }

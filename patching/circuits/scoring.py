"""Scores of components: exact patching, EAP and EAP-IG, on the same footing.

Every method estimates, per graph, the change of the metric when a component alone takes
its reference activation (:mod:`patching.circuits.ablation`) on the clean run:
``effect[g, c] = metric(clean with c ablated) - metric(clean)``, in the metric's units
(negative: ablating it hurts).

- :func:`exact_scores`: one patched forward per component (K per pass), the reference;
- :func:`eap_scores`: edge attribution patching (Syed et al. 2023; Nanda's attribution
  patching): ``(reference - clean) . grad metric`` at the clean run;
- :func:`eap_ig_scores`: EAP with integrated gradients (Hanna et al. 2024; Marks et al.'s
  activation variant as in MIB): the gradient averaged over ``ig_steps`` points of the path
  from the clean to the reference activations of one site (at one step, by default).

Both differentiate the ablation itself (``x + a * (reference - x)``, the intervention exact
patching makes at ``a = 1``), so every quantity is the one exact patching measures, and
three paths that plain gradients get wrong are handled: gradients run through the model's
re-encoded hints (:meth:`HookedNAR.hint_feedback_gradients`; training detaches them),
message units are attributed at the aggregate they alone feed (with max aggregation the
gradient at the messages only sees the winning edge), and a tied hidden unit's carry into
itself at the next step, which the tied ablation replaces, is cut
(:func:`~patching.circuits.sites.cut_hidden_carry`).

Each returns a :class:`Scores` ``[G, C]`` for a :class:`~patching.circuits.components.Components`;
aggregation over graphs is explicit (:meth:`Scores.mean`, :meth:`Scores.normalised`).
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from patching.circuits.ablation import AblationRuns
from patching.circuits.components import Components
from patching.circuits.sites import Site, cut_hidden_carry

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


def _attribution_site(runs: AblationRuns, site: Site, components: Components) -> Site:
    """Where ``site``'s unit components are attributed: message units at the aggregate they
    alone feed (:meth:`AblationRuns.message_aggregate`; with max aggregation the gradient at
    the messages reaches only the winning edge, so it cannot see the winner change), the
    rest, and message edges, at the site itself."""
    if site.name == "hook_msg" and components.granularity != "edge":
        return runs.message_aggregate() or site
    return site


def _path_attribution(
    runs: AblationRuns,
    site: Site,
    coef: Float[Tensor, "P S"],
    cut_carry: bool,
) -> Float[Tensor, "P S R d"]:
    """``d metric / d a`` for every element of ``site`` on ``P`` copies of the clean batch,
    copy p with the site at step t moved ``coef[p, t]`` of the way to its reference by the
    ablation itself (``x + a * (reference - x)``, ``x`` the live activation): the gradient at
    the activation times ``reference - x``, with every path downstream open (and the hidden
    carry cut when ``cut_carry``)."""
    S = runs.S
    R, d = runs.clean_acts[site.name].shape[1:]
    mask = coef[:, :, None, None].expand(coef.shape[0], S, R, d).clone().requires_grad_(True)
    name = _metric_name(runs)
    with cut_hidden_carry(runs.model, S) if cut_carry else nullcontext():
        values = runs.run({site.name: mask}, grad=True)[name]
    (grad,) = torch.autograd.grad(torch.nansum(values), mask)
    return grad


def _cuts_carry(site: Site, components: Components, cut_carry: bool | None) -> bool:
    tied = components.granularity == "tied"
    return site.name == "hook_node_out" and (tied if cut_carry is None else cut_carry)


def _differentiable(runs: AblationRuns, method: str):
    metric = runs.metrics[_metric_name(runs)]
    if not getattr(metric, "differentiable", True):
        raise ValueError(f"metric {metric.name} is not differentiable; {method} needs gradients")
    return metric


def eap_scores(
    runs: AblationRuns,
    components: Components,
    *,
    via_aggregate: bool = True,
    cut_carry: bool | None = None,
) -> Scores:
    """EAP: ``(reference - clean) * d metric / d activation`` at the clean run, summed into
    components; gradients follow every path the ablation does (hint feedback included).

    ``via_aggregate``: message units are attributed at their aggregate
    (:func:`_attribution_site`); ``cut_carry`` (default: for tied components) leaves out the
    carry of a hidden unit into itself at the next step, which a tied ablation replaces."""
    metric = _differentiable(runs, "EAP")
    attribution, rows = {}, runs.row_graphs()
    for site in runs.sites:
        at = _attribution_site(runs, site, components) if via_aggregate else site
        grad = _path_attribution(
            runs, at, torch.zeros(1, runs.S), _cuts_carry(site, components, cut_carry)
        )
        attribution[site.name] = grad[0]
        rows[site.name] = runs.row_graph(runs.batch, at).cpu()
    per_graph = components.aggregate(attribution, rows, runs.num_graphs)
    return Scores("eap", components, per_graph, metric.name, _gap(runs))


IG_SCOPES = ("site", "step")


def eap_ig_scores(
    runs: AblationRuns,
    components: Components,
    ig_steps: int = 8,
    scope: str = "step",
    *,
    via_aggregate: bool = True,
    cut_carry: bool | None = None,
) -> Scores:
    """EAP-IG: ``d metric / d a`` averaged over ``ig_steps`` midpoints
    ``a = (j + 1/2) / ig_steps`` of the ablation's own path ``x + a * (reference - x)``
    (at ``a = 1`` the ablation itself), one site at a time; the attributions of a site add
    up to the effect of moving it along the path (completeness), up to the quadrature error.

    ``scope``: what moves while the rest of the model computes on: ``"step"`` (one site at
    one step; step t's attribution is read from the copies that move step t, so it sees the
    later steps react) or ``"site"`` (one site at every step at once; cheaper, but the path
    then crosses a state no single component's ablation reaches). ``via_aggregate``,
    ``cut_carry``: as in :func:`eap_scores`.
    """
    if isinstance(ig_steps, bool) or not isinstance(ig_steps, int) or ig_steps < 1:
        raise ValueError(f"ig_steps must be a positive int, got {ig_steps!r}")
    if scope not in IG_SCOPES:
        raise ValueError(f"scope={scope!r} must be one of {IG_SCOPES}")
    metric = _differentiable(runs, "EAP-IG")
    S, K = runs.S, ig_steps
    alphas = (torch.arange(K, dtype=torch.float32) + 0.5) / K
    if scope == "step":  # copy (u, j): step u at alphas[j], the other steps at 0
        coef = (torch.eye(S)[:, None, :] * alphas[None, :, None]).reshape(S * K, S)
    else:
        coef = alphas[:, None].expand(K, S)
    attribution, rows = {}, runs.row_graphs()
    for site in runs.sites:
        at = _attribution_site(runs, site, components) if via_aggregate else site
        grad = _path_attribution(runs, at, coef, _cuts_carry(site, components, cut_carry))
        if scope == "step":
            grad = grad.view(S, K, *grad.shape[1:])
            attribution[site.name] = torch.stack([grad[t, :, t].mean(0) for t in range(S)])
        else:
            attribution[site.name] = grad.mean(0)
        rows[site.name] = runs.row_graph(runs.batch, at).cpu()
    per_graph = components.aggregate(attribution, rows, runs.num_graphs)
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

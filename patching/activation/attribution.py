"""Attribution patching: the first-order approximation of exact activation patching,
``grad(metric) . (source - target)`` at every site, from two forward passes and one backward."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from patching.activation.result import PatchingResult
from patching.activation.runs import (
    Direction,
    EvalMode,
    PatchingRun,
    patching_result,
    run_settings,
    setup_pair,
)

if TYPE_CHECKING:
    from hooked_nar.model import HookedNAR

__all__ = ["attribution_patching"]


def attribution_patching(
    model: HookedNAR,
    clean,
    corrupted,
    hooks: str | Sequence[str] = "hook_node_out",
    by: Sequence[str] = ("step", "node"),
    metric=None,
    direction: Direction = "denoising",
) -> PatchingResult:
    """First-order approximation of :func:`activation_patching` (same arguments and output).

    The patched metric of a site is ``metric(target) + sum over the site's rows and features
    of grad(metric)(target) * (source - target)``, the gradient taken on the target run
    (corrupted for denoising, clean for noising): two forward passes and one backward pass
    for every site of every hook. ``metric`` must be differentiable (``ValueError`` for
    accuracies).
    """
    by, hooks, direction, metric, target, source = setup_pair(
        model, clean, corrupted, hooks, by, metric, direction
    )
    if not getattr(metric, "differentiable", True):
        raise ValueError(f"metric {metric.name} is not differentiable; attribution needs gradients")
    with EvalMode(model):
        run = PatchingRun(model, target, source, hooks, metric)
        names = [f"steps.{t}.{h}" for h in hooks for t in range(run.S)]
        kept: dict[str, Tensor] = {}

        def keep(x: Tensor, hook) -> Tensor:
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            kept[hook.name] = x
            return x

        with torch.enable_grad():
            logits = model.run_with_hooks(run.run_tb, fwd_hooks=[(n, keep) for n in names])
            total = torch.nansum(metric(logits, run.run_tb))
            if not total.requires_grad:
                raise ValueError(f"metric {metric.name} does not depend on the activations")
            grads = torch.autograd.grad(total, [kept[n] for n in names], allow_unused=True)
    grad = dict(zip(names, grads, strict=True))
    tables = {}
    ptr, G = run.tb.ptr, run.num_graphs
    base = run.target_value.double()
    for h in hooks:
        graph, local = run.layout[h]
        if by != ("step",) and (local < 0).all():
            raise ValueError(f"hook {h!r} has no node rows; patch it with by=('step',)")
        contrib = []
        for t in range(run.S):
            g_t = grad[f"steps.{t}.{h}"]
            g_t = None if g_t is None else g_t.cpu()
            delta = (run.acts[h][t] - kept[f"steps.{t}.{h}"].detach().cpu()).double()
            c = (
                torch.zeros(delta.shape[0], dtype=torch.float64, device=delta.device)
                if g_t is None
                else (g_t.double() * delta).reshape(delta.shape[0], -1).sum(1)
            )
            c = torch.where(t < run.steps[graph], c, torch.full_like(c, float("nan")))
            contrib.append(c)
        contrib = torch.stack(contrib)  # [S, R]
        if by == ("step", "node"):
            tables[h] = base[graph][None, :] + contrib
        elif by == ("node",):
            tables[h] = base[graph] + contrib.nan_to_num().sum(0)
        else:
            from torch_geometric.utils import scatter

            summed = scatter(contrib.nan_to_num().T, graph, 0, dim_size=G, reduce="sum").T
            tables[h] = torch.where(
                torch.arange(run.S, device=run.steps.device)[:, None] < run.steps[None, :],
                base[None, :] + summed,
                torch.full_like(summed, float("nan")),
            )
        if by != ("step",) and tables[h].shape[-1] != int(ptr[-1]):
            raise ValueError(f"hook {h!r} has no node rows; patch it with by=('step',)")
    settings = run_settings(model, hooks, by, direction, metric, run)
    return patching_result(by, direction, "attribution", run, tables, metric, settings)

"""How two patching results agree (:func:`rank_correlation`) and how concentrated an effect is:
the top sites patched together beside random site sets of the same size
(:func:`site_control`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from patching.activation.result import PatchingResult, normalised_effect
from patching.activation.runs import EvalMode, PatchingRun, run_settings, setup_pair
from patching.controls import CausalResult

if TYPE_CHECKING:
    from hooked_nar.model import HookedNAR

__all__ = ["rank_correlation", "site_control"]


def rank_correlation(a: PatchingResult, b: PatchingResult, hook: str | None = None) -> float:
    """Spearman rank correlation of two results' effects over the sites finite in both."""
    from scipy.stats import spearmanr

    hook = a._hook(hook)
    x, y = a.effects[hook].flatten(), b[hook].flatten()
    if x.shape != y.shape:
        raise ValueError(f"the results have different site tables ({x.numel()} vs {y.numel()})")
    ok = torch.isfinite(x) & torch.isfinite(y)
    if int(ok.sum()) < 3:
        return float("nan")
    return float(spearmanr(x[ok].numpy(), y[ok].numpy()).statistic)


def site_control(
    model: HookedNAR,
    clean,
    corrupted,
    result: PatchingResult,
    hook: str | None = None,
    metric=None,
    fraction: float = 0.1,
    num_controls: int = 16,
    seed: int = 0,
) -> CausalResult:
    """Patch each graph's top ``fraction`` of sites of ``result`` together, beside random
    site sets of the same size (the control), with bootstrap intervals over graphs.

    ``result``: a ``by=("step", "node")`` result of the same graphs and direction, and
    ``metric`` the one it used (default: the same default);
    top sites are its largest effects (smallest under noising), chosen on these same graphs,
    so the comparison measures how concentrated the effect is, not generalisation. The
    measure is the fraction of the clean-corrupt gap recovered (denoising) or destroyed
    (noising, ``1 - effect``); the control of a graph is the mean over ``num_controls``
    random sets drawn with a generator seeded by ``seed`` (same seed, same draw).
    ``settings["all_sites"]``: the same measure with every site patched.
    """
    if result.by != ("step", "node"):
        raise ValueError("site_control needs a result with by=('step', 'node')")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    if isinstance(num_controls, bool) or not isinstance(num_controls, int) or num_controls < 1:
        raise ValueError(f"num_controls must be a positive int, got {num_controls!r}")
    hook = result._hook(hook)
    direction = result.direction
    by, hooks, direction, metric, target, source = setup_pair(
        model, clean, corrupted, hook, ("step", "node"), metric, direction
    )
    if metric.name != result.metric:
        raise ValueError(
            f"result was computed with {result.metric} but site_control got {metric.name}; "
            "pass the same metric="
        )
    with EvalMode(model):
        run = PatchingRun(model, target, source, hooks, metric)
        effects = result.effects[hook]
        if effects.shape != (run.S, int(run.tb.ptr[-1])):
            raise ValueError("result does not match these graphs (different sites)")
        gen = torch.Generator().manual_seed(seed)
        C = num_controls
        masks = torch.zeros(C + 2, run.S, effects.shape[1], dtype=torch.bool)
        sizes = []
        for g in range(run.num_graphs):
            a, b, S_g = int(run.tb.ptr[g]), int(run.tb.ptr[g + 1]), int(run.steps[g])
            table = effects[:S_g, a:b]
            ok = torch.isfinite(table).flatten()
            ids = ok.nonzero().flatten()
            if ids.numel() == 0:
                sizes.append(0)
                continue
            k = max(1, round(fraction * ids.numel()))
            sizes.append(k)
            order = table.flatten()[ids].argsort(descending=direction == "denoising", stable=True)
            for row, chosen in [(0, ids[order[:k]])] + [
                (1 + c, ids[torch.randperm(ids.numel(), generator=gen)[:k]]) for c in range(C)
            ]:
                t, v = chosen // (b - a), chosen % (b - a)
                masks[row, t, a + v] = True
            masks[C + 1, :S_g, a:b] = True
        values = run.run_masks(hook, masks).double()  # [C + 2, G]
    clean_v, corrupt_v = (
        (run.source_value, run.target_value)
        if direction == "denoising"
        else (run.target_value, run.source_value)
    )
    eff = normalised_effect(values, clean_v, corrupt_v)  # [C + 2, G]
    if direction == "noising":
        eff = 1 - eff
    measure = "gap recovered" if direction == "denoising" else "gap destroyed"
    settings = run_settings(
        model,
        [hook],
        by,
        direction,
        metric,
        run,
        fraction=fraction,
        num_controls=C,
        seed=seed,
        sites_per_graph=sizes,
        all_sites=float(eff[C + 1].nanmean()),
        control=f"{C} random site sets, same size",
    )
    return CausalResult.from_per_graph(
        f"top {fraction:.0%} sites at {hook} ({direction})",
        f"{measure} ({metric.name})",
        eff[0],
        eff[1 : C + 1].nanmean(0),
        settings,
        seed=seed,
    )
